"""Every stepup hook, grouped by phase.

pluggy is synchronous. Where work is asynchronous a hook returns an awaitable or an object with
async methods, and the host awaits it; no hook whose implementations may be asynchronous is
``firstresult`` (``stepup_deliver_code`` is: it returns a sender object synchronously, and the
host awaits the sender's ``send``). Hooks that add things take a ``register`` callback so the host can record which
plugin added what and refuse duplicates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from .client.method import ClientMethod
    from .config import StepUpConfig
    from .models import AuditEvent, CodeDelivery, Credential, Principal, StepUpVote
    from .scopes import ScopePolicy
    from .store.base import StoreFactory
    from .verifier import Verifier

PROJECT_NAME = "stepup"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class CodeSender(Protocol):
    """What ``stepup_deliver_code`` hands back: the host awaits ``send``."""

    name: str

    async def send(self, delivery: CodeDelivery) -> None: ...


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


@hookspec
def stepup_event(event: AuditEvent) -> Awaitable[None] | None:
    """Receive an audit event: every verification, failure, lockout, grant and revocation.

    :param event: the event.
    :returns: None, or an awaitable the host awaits.

    An implementation that raises is logged and ignored: audit never blocks a decision. The
    built-in implementation writes one JSON line per event to the ``stepup.audit`` logger.
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


