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
from .http import SERVICE_KEY, elevated_token, mounted, principal_of
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

#: The attribute ``requires_scope`` sets on the handler it returns: the scope it guards. It
#: survives further decorators that use ``functools.wraps``.
SCOPE_ATTRIBUTE = "__stepup_scope__"


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

    When the application that :func:`~stepup_core.server.mount` was called on starts, every
    guarded route in it (and in its sub-applications) is checked: a scope that is neither a
    reference scope nor declared in the configuration stops the start
    (:func:`check_guarded_scopes`). A guard the check cannot see (a handler wrapped without
    ``functools.wraps``) still refuses each request with ``500 config_error``.
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

        setattr(guarded, SCOPE_ATTRIBUTE, scope)
        return cast(F, guarded)

    return decorator


def _handler_scopes(method: str, handler: Any) -> list[tuple[str, str]]:
    """``(method, scope)`` pairs ``requires_scope`` guards a route's handler with: a function, or
    the methods of a ``web.View`` (``post`` -> ``POST``)."""
    if isinstance(handler, type):
        found = []
        for name in dir(handler):
            scope = getattr(getattr(handler, name, None), SCOPE_ATTRIBUTE, None)
            if isinstance(scope, str):
                found.append((name.upper(), scope))
        return found
    scope = getattr(handler, SCOPE_ATTRIBUTE, None)
    return [(method, scope)] if isinstance(scope, str) else []


def guarded_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """``(method, path, scope)`` of every ``requires_scope`` route in ``app`` and its sub-applications."""
    out: list[tuple[str, str, str]] = []
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        if isinstance(sub, web.Application):
            out.extend(guarded_routes(sub))  # its paths already carry the prefix
            continue
        for route in resource:
            guards = _handler_scopes(route.method, route.handler)
            out.extend((method, resource.canonical, scope) for method, scope in guards)
    return out


async def check_guarded_scopes(app: web.Application) -> None:
    """``on_startup`` of an application with stepup mounted: every scope a route is guarded with
    is known to the service, else :class:`ConfigError` naming the routes, so the start fails."""
    service = app[SERVICE_KEY]
    unknown: dict[tuple[str, str], list[str]] = {}
    for method, path, scope in guarded_routes(app):
        if not _known(service, scope):
            unknown.setdefault((path, scope), []).append(method)
    if unknown:
        routes = "; ".join(
            f"{'/'.join(sorted(methods))} {path} needs {scope!r}" for (path, scope), methods in unknown.items()
        )
        raise ConfigError(
            f"protected routes use scopes stepup does not know: {routes}. Declare application scopes "
            "in stepup.toml (declared_scopes, or a [scopes.\"<scope>\"] table), or fix the name"
        )


def _known(service: Any, scope: str) -> bool:
    try:
        service.policies.validate(scope)
    except InvalidScope:
        return False
    return True
