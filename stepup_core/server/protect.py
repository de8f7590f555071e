"""``requires_scope``: guard the application's own handlers with an elevated access token."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from aiohttp import web

from ..errors import ConfigError, InvalidScope, StepUpError
from ..models import Grant, Principal
from ..observe import observe
from ..scopes import validate_scope_syntax
from .http import elevated_token, mounted, principal_of
from .problems import internal_error, log_unexpected, problem_response

log = logging.getLogger("stepup.server")

#: Where a protected handler finds the grant that let the request through (None when the
#: scope's policy does not require step-up) and the caller: ``request[GRANT_KEY]``, or
#: :func:`grant_of`. Request keys named ``stepup_grant`` and ``stepup_principal``: typed
#: ``web.RequestKey`` objects where aiohttp has them (3.14+), plain strings before.
GRANT_KEY: Any
PRINCIPAL_KEY: Any
if hasattr(web, "RequestKey"):
    GRANT_KEY = web.RequestKey("stepup_grant", object)
    PRINCIPAL_KEY = web.RequestKey("stepup_principal", Principal)
else:  # pragma: no cover - aiohttp < 3.14
    GRANT_KEY, PRINCIPAL_KEY = "stepup_grant", "stepup_principal"


def grant_of(request: web.Request) -> Grant | None:
    """The grant ``requires_scope`` let this request through with (None: no step-up needed)."""
    grant = request.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else None


def principal_from(request: web.Request) -> Principal | None:
    """The caller ``requires_scope`` identified."""
    principal = request.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else None

F = TypeVar("F", bound=Callable[..., Awaitable[web.StreamResponse]])


def _request_of(args: tuple[Any, ...]) -> web.Request:
    for arg in reversed(args):
        if isinstance(arg, web.View):
            return arg.request
        if isinstance(arg, web.BaseRequest):
            return cast(web.Request, arg)
    raise TypeError("requires_scope decorates aiohttp handlers: (request) or a web.View method")


def requires_scope(scope: str) -> Callable[[F], F]:
    """Let a request through only with an elevated access token for ``scope``.

    The token comes from ``X-Elevated-Access-Token``; a single-use token is consumed. Without
    a valid token the answer is 401 with ``WWW-Authenticate: Bearer
    error="insufficient_user_authentication", error_description="...", scope="<scope>"``
    (RFC 9470) and a problem body whose ``check`` holds the check result. When the store cannot
    be reached the answer is 503: never a grant. The grant is at ``request[GRANT_KEY]``
    (:func:`grant_of`).

    Works on ``async def handler(request)`` and on :class:`aiohttp.web.View` methods.
    """
    validate_scope_syntax(scope)

    def decorator(handler: F) -> F:
        @functools.wraps(handler)
        async def guarded(*args: Any, **kwargs: Any) -> web.StreamResponse:
            request = _request_of(args)
            try:
                service, identify = mounted(request)
                with observe(service.pm, "guard", scope=scope) as operation:
                    principal = await principal_of(request, identify)
                    grant = await service.require_scope(principal, scope, elevated_token(request))
                    operation.outcome = "not_required" if grant is None else "granted"
            except InvalidScope as exc:
                log.error("protected route %s uses scope %r, which stepup does not know: %s", request.path, scope, exc)
                return problem_response(
                    ConfigError(
                        f"this route is guarded by scope {scope!r}, which is not declared on the server"
                    )
                )
            except StepUpError as exc:
                if exc.status >= 500:
                    log.error("protected route %s refused: %s", request.path, exc)
                return problem_response(exc)
            except Exception as exc:  # noqa: BLE001 - fail closed: no handler call, no traceback out
                log_unexpected(request, exc)
                return problem_response(internal_error())
            request[GRANT_KEY] = grant
            request[PRINCIPAL_KEY] = principal
            return await handler(*args, **kwargs)

        return cast(F, guarded)

    return decorator
