"""``requires_scope``: guard the application's own aiohttp handlers with an elevated access token."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from aiohttp import web

from ..models import Grant, Principal
from ..scopes import validate_scope_syntax
from .aiohttp_adapter import SCOPE_ATTRIBUTE, aiohttp_response, check_guarded_scopes, guarded_routes, mounted_of
from .guard import Elevation, Gate, ServiceGate, TransactionBuilder, guard, refusal, token_from
from .http import AnyIdentify

__all__ = [
    "GRANT_KEY",
    "PRINCIPAL_KEY",
    "TRANSACTION_KEY",
    "TransactionBuilder",
    "check_guarded_scopes",
    "grant_of",
    "guarded_routes",
    "principal_from",
    "requires_scope",
    "transaction_of",
]

#: Where a protected handler finds the grant that let the request through (None when the
#: scope's policy does not require step-up) and the caller: ``request[GRANT_KEY]``, or
#: :func:`grant_of`. Request keys named ``stepup_grant`` and ``stepup_principal``: typed
#: ``web.RequestKey`` objects where aiohttp has them (3.14+), plain strings before.
GRANT_KEY: Any
PRINCIPAL_KEY: Any
#: The transaction details the guard built and checked (:func:`transaction_of`).
TRANSACTION_KEY: Any
if hasattr(web, "RequestKey"):
    GRANT_KEY = web.RequestKey("stepup_grant", object)
    PRINCIPAL_KEY = web.RequestKey("stepup_principal", Principal)
    TRANSACTION_KEY = web.RequestKey("stepup_transaction", object)
else:  # pragma: no cover - aiohttp < 3.14
    GRANT_KEY, PRINCIPAL_KEY, TRANSACTION_KEY = "stepup_grant", "stepup_principal", "stepup_transaction"


def grant_of(request: web.Request) -> Grant | None:
    """The grant ``requires_scope`` let this request through with (None: no step-up needed)."""
    grant = request.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else None


def principal_from(request: web.Request) -> Principal | None:
    """The caller ``requires_scope`` identified."""
    principal = request.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else None


def transaction_of(request: web.Request) -> dict[str, Any] | None:
    """The transaction details ``requires_scope(..., transaction=...)`` built for this request and
    checked the token against: act on these, not on a second reading of the request."""
    details = request.get(TRANSACTION_KEY)
    return dict(details) if isinstance(details, Mapping) else None


F = TypeVar("F", bound=Callable[..., Awaitable[web.StreamResponse]])


def _request_of(args: tuple[Any, ...]) -> web.Request:
    for arg in reversed(args):
        if isinstance(arg, web.View):
            return arg.request
        if isinstance(arg, web.BaseRequest):
            return cast(web.Request, arg)
    raise TypeError("requires_scope decorates aiohttp handlers: (request) or a web.View method")


def requires_scope(
    scope: str,
    *,
    gate: Gate | None = None,
    identify: AnyIdentify | None = None,
    transaction: TransactionBuilder | None = None,
) -> Callable[[F], F]:
    """Let a request through only with an elevated access token for ``scope``.

    The token comes from ``X-Elevated-Access-Token``; a single-use token is consumed. Without
    a valid token the answer is 401 with ``WWW-Authenticate: Bearer
    error="insufficient_user_authentication", error_description="...", scope="<scope>"``
    (RFC 9470) and a problem body whose ``check`` holds the check result. When the store cannot
    be reached the answer is 503: never a grant. The grant is at ``request[GRANT_KEY]``
    (:func:`grant_of`).

    :param gate: who decides: by default the service ``mount`` put on the application; a
        :class:`~stepup_core.remote.RemoteGuard` asks a ``stepup serve`` beside it instead.
    :param identify: the application's ``identify`` (default: the one given to ``mount``). With
        both ``gate`` and ``identify`` the application need not mount stepup at all.
    :param transaction: a function (sync or async) that builds the details of the action from
        the request (``lambda r: {"amount": ..., "payee": ...}``). The token must then be bound
        to details with the same RFC 8785 canonical form: a token bound to other details is
        refused with 403 ``transaction_mismatch`` (audited, not consumed); an unbound token or
        none gets the 401 above, whose ``check.transaction`` holds the details to step up with.
        The builder may answer None to exempt one request from binding. The details are at
        :func:`transaction_of`. See ``docs/transaction-binding.md``.

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
            chosen_gate, chosen_identify = gate, identify
            if chosen_gate is None or chosen_identify is None:
                try:
                    mounted = mounted_of(request)
                except Exception as exc:  # noqa: BLE001 - fail closed: no handler call
                    return aiohttp_response(refusal(exc, scope=scope, where=request.path))
                chosen_gate = chosen_gate or ServiceGate(mounted.service)
                chosen_identify = chosen_identify or mounted.identify
            outcome = await guard(
                chosen_gate,
                scope,
                chosen_identify,
                request,
                token_from(request.headers),
                where=request.path,
                transaction=transaction,
            )
            if not isinstance(outcome, Elevation):
                return aiohttp_response(outcome)
            request[GRANT_KEY] = outcome.grant
            request[PRINCIPAL_KEY] = outcome.principal
            request[TRANSACTION_KEY] = outcome.transaction
            return await handler(*args, **kwargs)

        setattr(guarded, SCOPE_ATTRIBUTE, scope)
        return cast(F, guarded)

    return decorator
