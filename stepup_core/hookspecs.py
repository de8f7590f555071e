"""Every stepup hook, grouped by phase.

pluggy is synchronous. Where work is asynchronous a hook returns an awaitable or an object with
async methods, and the host awaits it; no hook whose implementations may be asynchronous is
``firstresult`` (``stepup_deliver_code`` is: it returns a sender object synchronously, and the
host awaits the sender's ``send``). Hooks that add things take a ``register`` callback so the host can record which
plugin added what and refuse duplicates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

    from .client.method import ClientMethod
    from .config import StepUpConfig
    from .models import (
        AuditEvent,
        CodeDelivery,
        Credential,
        CredentialChange,
        Message,
        Operation,
        Principal,
        StepUpVote,
    )
    from .scopes import ScopePolicy
    from .service import StepUpService
    from .store.base import StoreFactory
    from .verifier import Verifier

PROJECT_NAME = "stepup"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class CodeSender(Protocol):
    """What ``stepup_deliver_code`` hands back: the host awaits ``send``."""

    name: str

    async def send(self, delivery: CodeDelivery) -> None: ...


class MessageSender(Protocol):
    """What ``stepup_deliver_message`` hands back: the host awaits ``send``."""

    name: str

    async def send(self, message: Message) -> None: ...


# -------------------------------------------------------------------------------------------
# Setup: stores and methods
# -------------------------------------------------------------------------------------------


@hookspec
def stepup_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Register store backends by URL scheme.

    :param register: ``register(scheme, factory)``; ``factory(url, clock)`` returns an awaitable
        that opens the store. A scheme registered twice is an error naming both plugins.

    The built-ins register ``memory`` and ``sqlite``; stepup-redis registers ``redis`` and
    ``rediss``.
    """


@hookspec
def stepup_register_verifiers(register: Callable[[Verifier], None], config: StepUpConfig) -> None:
    """Register the server halves of verification methods.

    :param register: call with each :class:`~stepup_core.verifier.Verifier`; method names are
        unique, a duplicate is an error naming both plugins.
    :param config: the whole configuration; a plugin reads its own section with
        ``config.plugin_section(name, SettingsClass)``.
    """


# -------------------------------------------------------------------------------------------
# Lifecycle: a service starts and closes
# -------------------------------------------------------------------------------------------


@hookspec
def stepup_startup(service: StepUpService) -> Awaitable[None] | None:
    """The service is built and its store is open: start what runs beside it.

    :param service: the :class:`~stepup_core.service.StepUpService`; its ``config``, ``store``,
        ``clock`` and ``pm`` are ready.
    :returns: None, or an awaitable the host awaits.

    Fires once per service, at the end of ``StepUpService.create``, in pluggy's order (the
    plugin registered last first). An implementation that raises stops the start:
    the service is closed (``stepup_shutdown`` fires) and the error propagates, so a bad
    ``[plugins.<name>]`` table fails loudly. A plugin keeps what it starts per service (a
    background task, a listener) and stops it in ``stepup_shutdown``.
    """


@hookspec
def stepup_shutdown(service: StepUpService) -> Awaitable[None] | None:
    """The service is closing: stop what ``stepup_startup`` started, before the store closes.

    :param service: the closing service.
    :returns: None, or an awaitable the host awaits.

    Fires on every ``StepUpService.close`` (so possibly for a service whose startup did not
    run, and more than once: stop idempotently), in the reverse of ``stepup_startup``'s order.
    An implementation that raises is logged and the others still run.
    """


# -------------------------------------------------------------------------------------------
# The check: is step-up required?
# -------------------------------------------------------------------------------------------


@hookspec
def stepup_check(principal: Principal, scope: str, policy: ScopePolicy) -> StepUpVote | None:
    """The StepUpCheck: vote on whether ``principal`` must step up for ``scope``.

    :param principal: the caller.
    :param scope: a known, valid scope.
    :param policy: the scope's policy.
    :returns: a :class:`~stepup_core.models.StepUpVote`, or None to abstain.

    Step-up is required unless a valid elevated token covers the scope and no vote demands
    more (``accept_existing_token=False``). An exception counts as "required". The built-in
    implementation (``trylast``) votes by ``policy.required``; the host asserts that at least
    one implementation answered.
    """


@hookspec
def stepup_user_credentials(
    principal: Principal,
) -> Iterable[Credential] | Awaitable[Iterable[Credential]] | None:
    """Credentials the application already knows (the email or wallet a user signed in with).

    :param principal: the caller.
    :returns: credentials (``external=True`` is set by the host), an awaitable of them, or None.

    They join the user's stored credentials for routing and verification, so the application
    need not copy them into the stepup store. Their ``method`` may be left empty: the host picks
    the verifier that handles their ``format``.
    """


@hookspec(firstresult=True)
def stepup_transaction_summary(scopes: tuple[str, ...], transaction: dict[str, Any]) -> str | None:
    """The line a person reads before approving a step-up bound to ``transaction``.

    :param scopes: the scopes the step-up is for (``("payments:send",)``).
    :param transaction: the details, as a JSON object in canonical key order.
    :returns: one line ("Approve 120.00 EUR to ACME Ltd"), or None to leave it to another
        implementation.

    Stops at the first non-None result. Called when a bound challenge is issued, a bound check
    is answered and a protected route refuses a request for want of a bound token. The line
    appears in the OTP email and SMS beside the code, in the wallet's EIP-4361 statement, in
    the check's and the challenge's ``transaction.summary`` and in the built-in prompt. Control
    and format characters are removed; more than 200 characters, or nothing left, is a
    ``plugin_error``. With no implementation the core names every detail
    (``Approve amount 120.00, currency EUR, payee ACME Ltd``).
    """


# -------------------------------------------------------------------------------------------
# Delivery and audit
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def stepup_deliver_code(delivery: CodeDelivery, config: StepUpConfig) -> CodeSender | None:
    """Offer to send a one-time code over ``delivery.channel`` (``email`` or ``sms``).

    :param delivery: the code, address and channel.
    :param config: the whole configuration.
    :returns: a :class:`CodeSender` whose ``send`` the host awaits, or None to decline.

    The first non-None answer is used. The built-in console sender is ``trylast``: it answers
    only when no real sender does. A ``send`` that raises makes the delivery fail with
    ``delivery_failed`` and the challenge it belongs to unusable.
    """


@hookspec(firstresult=True)
def stepup_deliver_message(message: Message, config: StepUpConfig) -> MessageSender | None:
    """Offer to send a message that is not a code (a security notice) over ``message.channel``.

    :param message: the rendered message: channel (``email`` or ``sms``), address, subject,
        text and, for email, an HTML alternative.
    :param config: the whole configuration.
    :returns: a :class:`MessageSender` whose ``send`` the host awaits, or None to decline.

    The first non-None answer is used, as for ``stepup_deliver_code``: a plugin that sends
    codes over a transport sends messages over the same one. The built-in console sender is
    ``trylast``. A ``send`` that raises is logged and counted (``notification_failed``).
    """


@hookspec
def stepup_event(event: AuditEvent, service: StepUpService) -> Awaitable[None] | None:
    """Receive an audit event: every verification, failure, lockout, grant and revocation.

    :param event: the event.
    :param service: the service that emitted it (its store, configuration and clock); an
        implementation may leave this parameter out.
    :returns: None, or an awaitable the host awaits.

    An implementation that raises is logged and ignored: audit never blocks a decision. The
    built-in implementation writes one JSON line per event to the ``stepup.audit`` logger.
    This hook fires on every protected request (``grant_used``): return early for the types
    you do not handle.
    """


@hookspec
def stepup_credential_changed(change: CredentialChange, service: StepUpService) -> Awaitable[None] | None:
    """A credential was linked, unlinked or reset.

    :param change: what changed, with the stored credential records (their ``identifier``,
        the address or key, included: this stays on the server).
    :param service: the service.
    :returns: None, or an awaitable the host awaits.

    Fires after the change is stored (and after its ``credential_enrolled`` or
    ``credential_deleted`` event), once per change. An implementation that raises is logged
    and ignored. The built-in security notifications use it to tell the user.
    """


# -------------------------------------------------------------------------------------------
# Observation: timings and the server
# -------------------------------------------------------------------------------------------


@hookspec
def stepup_operation(operation: Operation) -> None:
    """A timed piece of work ended: a StepUpCheck, the protected-route guard, a verifier call.

    :param operation: its name, outcome, start, duration and attributes (names the server
        chose, never secrets).

    Called synchronously on the request's path, in the request's context (a span current in a
    server middleware is current here): do little, never block. The host reads no clock when
    no plugin implements this hook. An implementation that raises is logged and ignored.
    """


@hookspec
def stepup_server_middlewares(config: StepUpConfig) -> Iterable[Middleware] | None:
    """aiohttp middlewares for the stepup routes.

    :param config: the whole configuration.
    :returns: middlewares, or None.

    Called once when the routes are mounted. The middlewares run inside stepup's problem
    middleware, in the order returned, on every request under the prefix: a handler's
    :class:`~stepup_core.errors.StepUpError` reaches them as the exception (its ``code`` and
    ``status`` readable) before it becomes ``application/problem+json``; re-raise it. The
    application's own routes, and ``requires_scope``, are not under them.
    """


# -------------------------------------------------------------------------------------------
# Client side
# -------------------------------------------------------------------------------------------


@hookspec
def stepup_register_client_methods(register: Callable[[ClientMethod], None]) -> None:
    """Register the client halves of verification methods.

    :param register: call with each :class:`~stepup_core.client.method.ClientMethod`; names
        match the server's verifiers and are unique.
    """


HOOK_NAMES: tuple[str, ...] = tuple(sorted(n for n in list(globals()) if n.startswith("stepup_")))
