"""The guard every framework shares: may this request run an action that needs ``scope``?

A framework's guard (aiohttp's ``requires_scope``, the FastAPI dependency, the Django and Flask
decorators) does three things: find the caller with the application's ``identify``, read the
``X-Elevated-Access-Token`` header, and ask a :class:`Gate` for a decision. The decision is an
:class:`Elevation` (let the request through, with the grant) or an
:class:`~stepup_core.server.http.Answer` to send instead: the RFC 9470 401 with its problem body,
401 ``unauthenticated`` for an anonymous caller, 503 when the store cannot be reached, 500 for a
route guarded by a scope the server does not know. Every framework writes that answer back as it
is, so they all answer alike, byte for byte.

Two gates ship: :class:`ServiceGate` decides with a :class:`~stepup_core.service.StepUpService`
sharing the application's store; :class:`~stepup_core.remote.RemoteGuard` asks a ``stepup serve``
beside the application over ``POST {prefix}/introspect``.

Transaction binding lives here too, so every framework checks it alike: a guard given a
:data:`TransactionBuilder` builds the action's details from the request (after ``identify``) and
hands them to the gate. A token bound to other details is refused with 403
``transaction_mismatch`` and not consumed; details that cannot be read or canonicalised are a
422 ``invalid_transaction``; the elevation carries the details that were checked, for the
handler to act on (never a second reading of the request).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import pluggy

from ..errors import ConfigError, InvalidScope, InvalidTransaction, StepUpError
from ..models import Grant, Principal
from ..observe import observe
from ..plugins import direct_impls
from .http import TOKEN_HEADER, Answer, AnyIdentify, principal_from_identify
from .problems import internal_error, problem_answer

if TYPE_CHECKING:
    from ..service import StepUpService

log = logging.getLogger("stepup.server")

#: The details of the action a request performs (amount, currency, payee...), or None to exempt
#: this one request from binding.
TransactionDetails = Mapping[str, Any] | None
#: ``transaction=`` on every guard: builds the details from the framework's request (the one
#: ``identify`` receives; Django REST framework's ``Request`` for its permission), sync or async.
TransactionBuilder = Callable[[Any], TransactionDetails | Awaitable[TransactionDetails]]
#: What a guard answers (422 ``invalid_transaction``) when the builder fails.
UNREADABLE_DETAILS = "could not read this action's transaction details from the request; check the request body"


@attrs.frozen
class Elevation:
    """What a guard lets a request through with: the caller and the grant that covers ``scope``
    (None when the scope's policy needs no step-up). A single-use grant is already spent."""

    principal: Principal
    scope: str
    grant: Grant | None = None
    #: The transaction details the guard built and checked the grant against (None: the route
    #: binds none, or its builder exempted this request). Act on these.
    transaction: dict[str, Any] | None = None


class Gate(Protocol):
    """Decides whether ``principal`` holding ``token`` may act under ``scope`` (and, with
    ``transaction``, on exactly those details)."""

    async def decide(
        self,
        scope: str,
        principal: Principal,
        token: str | None,
        *,
        where: str,
        transaction: TransactionDetails = None,
    ) -> Elevation | Answer:
        """The elevation, or the answer to send instead. Never raises: every failure is an answer."""
        ...


def token_from(headers: Mapping[str, str] | Any) -> str | None:
    """The elevated access token of a request's headers (any mapping with ``get``), or None."""
    value = headers.get(TOKEN_HEADER) or ""
    value = value.strip()
    return value or None


def refusal(exc: BaseException, *, scope: str, where: str) -> Answer:
    """The answer for what a guard raised: stepup's own errors as they are; a scope the server
    does not know is the route's misconfiguration (500 ``config_error``, logged); anything else
    a logged 500. Never a grant."""
    if isinstance(exc, InvalidScope):
        log.error("protected route %s uses scope %r, which stepup does not know: %s", where, scope, exc)
        return problem_answer(
            ConfigError(f"this route is guarded by scope {scope!r}, which is not declared on the server")
        )
    if isinstance(exc, StepUpError):
        if exc.status >= 500:
            log.error("protected route %s refused: %s", where, exc)
        return problem_answer(exc)
    log.error("unexpected error guarding %s", where, exc_info=exc)
    return problem_answer(internal_error())


@attrs.frozen
class ServiceGate:
    """Decide with a service on the application's own store (``service.require_scope``)."""

    service: StepUpService

    @property
    def pm(self) -> pluggy.PluginManager:
        """The service's plugins: a guard reports its ``guard`` operation to them."""
        return self.service.pm

    async def decide(
        self,
        scope: str,
        principal: Principal,
        token: str | None,
        *,
        where: str,
        transaction: TransactionDetails = None,
    ) -> Elevation | Answer:
        try:
            grant = await self.service.gate.require_scope(principal, scope, token, transaction)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: an answer, never a grant
            return refusal(exc, scope=scope, where=where)
        return Elevation(principal, scope, grant, None if transaction is None else dict(transaction))


async def build_transaction(build: TransactionBuilder, argument: Any) -> TransactionDetails:
    """Run an application's transaction builder on ``argument`` (any framework's request).

    A :class:`~stepup_core.errors.StepUpError` it raises passes through (raise a
    ``ValidationError`` for a precise message); any other exception, or an answer that is not a
    mapping or None, refuses the request with 422 ``invalid_transaction``: it is logged, and
    nothing is let through.
    """
    try:
        details: object = build(argument)
        if inspect.isawaitable(details):
            details = await details
    except asyncio.CancelledError:
        raise
    except StepUpError:
        raise
    except Exception as exc:
        log.warning("the transaction builder %r failed: %s", build, exc, exc_info=True)
        raise InvalidTransaction(UNREADABLE_DETAILS) from None
    if details is not None and not isinstance(details, Mapping):
        log.error("the transaction builder %r answered a %s, not a mapping", build, type(details).__name__)
        raise InvalidTransaction(UNREADABLE_DETAILS)
    return details


async def identify_caller(identify: AnyIdentify, argument: Any, *, scope: str, where: str) -> Principal | Answer:
    """Run the application's ``identify``: the principal, or the answer for an anonymous caller
    (401 ``unauthenticated``) or a failing ``identify`` (its error, or a logged 500)."""
    try:
        return await principal_from_identify(identify, argument)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed
        return refusal(exc, scope=scope, where=where)


async def guard(
    gate: Gate,
    scope: str,
    identify: AnyIdentify,
    argument: Any,
    token: str | None,
    *,
    where: str,
    transaction: TransactionBuilder | None = None,
) -> Elevation | Answer:
    """Identify the caller, build the action's ``transaction`` details (when the route binds
    them), then let ``gate`` decide. Never raises (except cancellation).

    A gate with plugins (``pm``) reports a ``guard`` operation to ``stepup_operation``, its
    outcome ``granted``, ``not_required`` or the refusal's ``code``."""
    pm: pluggy.PluginManager | None = getattr(gate, "pm", None)
    if pm is None or direct_impls(pm, "stepup_operation") == ():  # nobody listens: nothing to time
        return await _identify_and_decide(gate, scope, identify, argument, token, where, transaction)
    with observe(pm, "guard", scope=scope) as operation:
        outcome = await _identify_and_decide(gate, scope, identify, argument, token, where, transaction)
        if isinstance(outcome, Elevation):
            operation.outcome = "not_required" if outcome.grant is None else "granted"
        else:
            operation.outcome = _code_of(outcome)
    return outcome


async def _identify_and_decide(
    gate: Gate,
    scope: str,
    identify: AnyIdentify,
    argument: Any,
    token: str | None,
    where: str,
    transaction: TransactionBuilder | None,
) -> Elevation | Answer:
    try:  # identify_caller(), one coroutine less: this runs on every protected request
        found = await principal_from_identify(identify, argument)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed
        return refusal(exc, scope=scope, where=where)
    if transaction is None:
        return await gate.decide(scope, found, token, where=where)
    try:
        details = await build_transaction(transaction, argument)
        if details is None:
            return await gate.decide(scope, found, token, where=where)
        return await gate.decide(scope, found, token, where=where, transaction=details)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: an answer, never a grant
        return refusal(exc, scope=scope, where=where)


def _code_of(answer: Answer) -> str:
    try:
        code = answer.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) else "error"
