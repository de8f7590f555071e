"""The server half of a method: the :class:`Verifier` protocol and what the core lends it.

A verifier only says "this response proves possession of this credential" or raises
:class:`~stepup_core.errors.VerificationFailed` (or a subclass). Everything that must be the
same for every method is the core's: challenge ids, expiry, single use, user and session
binding, attempt budgets, lockout, send limits, minting, audit events. See
``docs/writing-plugins.md``.

Four shapes of exchange fit this one protocol (``interaction``):

- ``code``: ``begin`` may send a code (OTP) or be skipped (TOTP, recovery:
  ``requires_challenge = False``); ``verify`` reads ``response["code"]``.
- ``options``: ``begin`` returns options (WebAuthn); ``verify`` checks the authenticator's answer.
- ``message``: ``begin`` returns a message to sign (EIP-4361); ``verify`` checks the signature.
- ``redirect``: ``begin`` returns a URL carrying ``challenge.callback_state``; the core's
  callback route (``GET {prefix}/callback/{method}``) finds the challenge by that state and
  calls ``verify`` with the query parameters as the response; the client polls the challenge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from .clock import Clock
from .crypto import SecretKeys
from .errors import NoEligibleCredential
from .models import (
    AuditEvent,
    Challenge,
    CodeDelivery,
    Credential,
    CredentialFormat,
    Factor,
    Interaction,
    Principal,
)
from .store.base import Store


@attrs.frozen
class RateLimit:
    """At most ``limit`` events per ``window`` seconds."""

    limit: int
    window: float


@attrs.define
class Attempt:
    """One call into a verifier.

    ``credential`` is the one the caller named (checked to belong to the user and the method),
    else the challenge's, else the method's default for the user, else None. ``candidates`` are
    all of the user's credentials of this method. ``params`` are the begin parameters or the
    verification response, as sent by the client (untrusted: validate them).
    """

    principal: Principal
    credential: Credential | None
    candidates: tuple[Credential, ...]
    params: dict[str, Any]
    challenge: Challenge | None = None
    requested_scopes: tuple[str, ...] = ()
    #: True when the caller named the credential (or the challenge fixed it); False when the
    #: core chose the method's default for the user.
    credential_requested: bool = False

    def require_credential(self) -> Credential:
        """The credential this step-up is about.

        In ``begin`` and ``verify`` the core always resolves one (for MFA methods the device
        marked default, else the newest) and refuses the call with NoEligibleCredential before
        it reaches the verifier when the user has none: a verifier takes this one rather than
        choosing a default itself.
        """
        if self.credential is None:
            raise NoEligibleCredential("this user has no credential of this method; enrol one first")
        return self.credential


@attrs.frozen
class Verification:
    """A verifier's success: the credential whose possession was proven.

    The core refuses a credential id that is not among the attempt's ``candidates``.
    """

    credential_id: str
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class NewCredential:
    """What ``complete_enrollment`` (or an immediate ``begin_enrollment``) hands the core to store.

    The core assigns the id, user, method, factor and creation time.
    """

    format: CredentialFormat
    alias: str | None = None
    type: str | None = None
    identifier: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    sign_in: bool = False
    #: Replace the user's existing credentials of this method (recovery codes regenerate).
    replaces_existing: bool = False


@attrs.frozen
class EnrollmentStep:
    """``begin_enrollment``'s answer: public ``data`` for the person (a URI, options, codes) and,
    for methods that need no confirmation, the ``credential`` to store at once."""

    data: dict[str, Any] = attrs.field(factory=dict)
    credential: NewCredential | None = None


class CredentialRepository(Protocol):
    async def list_for_user(self, user_id: str) -> list[Credential]: ...

    async def get(self, user_id: str, credential_id: str) -> Credential | None: ...

    async def save(self, credential: Credential) -> None: ...

    async def delete(self, user_id: str, credential_id: str) -> bool: ...


@attrs.define
class VerifierContext:
    """What the core lends a verifier on every call."""

    store: Store
    clock: Clock
    keys: SecretKeys
    credentials: CredentialRepository
    emit: Callable[[AuditEvent], Awaitable[None]]
    deliver_code: Callable[[CodeDelivery], Awaitable[None]]
    #: Absolute URL of ``GET {prefix}/callback/{method}`` for redirect methods.
    callback_url: Callable[[str], str]
    #: ``await ctx.hit_rate_limit(key, RateLimit(...))``: the core's fixed-window limiter, for
    #: limits only the method can key (a destination not linked yet); raises RateLimited.
    hit_rate_limit: Callable[[str, RateLimit], Awaitable[None]]
    app_name: str = "stepup"

    def event(self, type: str, outcome: str, **fields: Any) -> AuditEvent:
        return AuditEvent(type=type, outcome=outcome, at=self.clock.now(), **fields)


@runtime_checkable
class Verifier(Protocol):
    """The server half of a verification method, registered by ``stepup_register_verifiers``.

    The declarations below are read-only: plain attributes, attrs fields or properties all fit.
    """

    @property
    def name(self) -> str:
        """Unique method name on the wire (``totp``); also the plugin's entry-point key."""

    @property
    def factor(self) -> Factor: ...

    @property
    def formats(self) -> Sequence[CredentialFormat]: ...

    @property
    def interaction(self) -> Interaction: ...

    @property
    def fallback(self) -> bool:
        """Counts as MFA only beside another MFA credential (recovery codes): it neither routes a
        user to MFA nor is ever the default device."""

    @property
    def requires_challenge(self) -> bool:
        """False: ``verify`` may run with no challenge (a code from an app the user already holds)."""

    @property
    def challenge_ttl(self) -> float:
        """Seconds a challenge of this method lives."""

    @property
    def begin_limits(self) -> Sequence[RateLimit]:
        """Limits on ``begin`` per credential (for methods that send something, like OTP)."""

    @property
    def package(self) -> str:
        """Distribution to install for this method (named in "not installed" errors)."""

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        """Start a challenge (``attempt.challenge`` is new, with id, expiry and, for redirect
        methods, ``callback_state``); keep private state in ``attempt.challenge.state``; return
        the public data the client needs (options, a message, a URL). Raise to refuse; the
        core then discards the challenge."""
        ...

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        """Check ``attempt.params`` (the response). Return the proven credential or raise
        VerificationFailed / InvalidResponse / ReplayDetected."""
        ...

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        """Start enrolling a credential; ``attempt.challenge`` is the enrolment (its ``state`` is
        private). Return what the person needs."""
        ...

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        """Check the person's answer (``attempt.params``) and return the credential to store."""
        ...


class CredentialFilter(Protocol):
    """Optional on a verifier: ``eligible(credential)`` is False for credentials of its formats
    that can never step up (an embedded wallet). They are then left out of the check's eligible
    credentials and do not make enrolment require a ``credential:link`` token."""

    def eligible(self, credential: Credential) -> bool: ...


class CodeSendingVerifier(Protocol):
    """Optional on a verifier that sends codes through ``ctx.deliver_code``:
    ``delivery_channels`` names the channels it sends over (``email``, ``sms``). Outside
    development mode the core refuses to start when one of them has no sender but the console
    (see :meth:`~stepup_core.service.StepUpService.check_code_delivery`)."""

    @property
    def delivery_channels(self) -> Sequence[str]: ...


class CredentialCleanup(Protocol):
    """Optional on a verifier: ``forget(ctx, credential)`` runs after the core deleted one of its
    credentials (unlinked, or replaced by a new enrolment), to remove the method's own records.
    Errors are logged, never raised."""

    async def forget(self, ctx: VerifierContext, credential: Credential) -> None: ...
