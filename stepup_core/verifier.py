"""The server half of a method: the :class:`Verifier` protocol and what the core lends it.

A verifier only says "this response proves possession of this credential" or raises
:class:`~stepup_core.errors.VerificationFailed` (or a subclass). Everything that must be the
same for every method is the core's: challenge ids, expiry, single use, user and session
binding, attempt budgets, lockout, send limits, minting, audit events. See
``docs/writing-plugins.md``.

Four shapes of exchange fit this one protocol (``interaction``):

- ``code``: ``begin`` may send a code (OTP) or be skipped (TOTP, recovery:
  ``requires_challenge = False``); ``verify`` reads ``response["code"]`` with :func:`read_code`.
- ``options``: ``begin`` returns options (WebAuthn); ``verify`` checks the authenticator's answer.
- ``message``: ``begin`` returns a message to sign (EIP-4361); ``verify`` checks the signature.
- ``redirect``: ``begin`` returns a URL carrying ``challenge.callback_state``; the core's
  callback route (``GET {prefix}/callback/{method}``) finds the challenge by that state and
  calls ``verify`` with the query parameters as the response; the client polls the challenge.

:class:`BaseVerifier` carries the declarations' defaults (a subclass states only what differs,
like llm's model base class) and the optional ``eligible`` and ``forget``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from .clock import Clock
from .crypto import SecretKeys
from .errors import (
    ChallengeNotFound,
    EnrollmentFailed,
    InvalidResponse,
    NoEligibleCredential,
    ValidationError,
    VerificationFailed,
)
from .models import (
    ALIAS_NOT_BLANK,
    AuditEvent,
    Challenge,
    CodeDelivery,
    Credential,
    CredentialFormat,
    Factor,
    Interaction,
    Principal,
    Transaction,
)
from .models import MAX_ALIAS_LENGTH as MAX_ALIAS_LENGTH  # re-exported: methods cap their aliases with it
from .store.base import Store

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_NOT_BLANK = re.compile(ALIAS_NOT_BLANK)


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
    #: The transaction the step-up is bound to (its hash, summary and details), or None; the
    #: challenge's when there is one. A method that declares ``commits_transaction`` makes its
    #: proof cover ``transaction.hash``.
    transaction: Transaction | None = None

    def __attrs_post_init__(self) -> None:
        if self.transaction is None and self.challenge is not None:
            self.transaction = self.challenge.transaction

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

    def require_challenge(self) -> Challenge:
        """The challenge (or enrolment) this call belongs to.

        The core passes one to every ``begin``, ``begin_enrollment`` and ``complete_enrollment``,
        and to ``verify`` of every method with ``requires_challenge``; this fails closed when a
        method reads it where there is none.
        """
        if self.challenge is None:
            raise ChallengeNotFound("this answer belongs to no issued challenge; start a new one")
        return self.challenge


#: The one limit on a credential's display name, wherever it comes from.


def check_alias(alias: object, field: str = "alias") -> str | None:
    """An alias as given (None stays None); ValidationError naming ``field`` unless it is a
    string of 1 to :data:`MAX_ALIAS_LENGTH` characters that is not only white space."""
    if alias is None:
        return None
    # The same rule as the OpenAPI document's (``minLength``, ``maxLength`` and ``pattern``).
    if not isinstance(alias, str) or not _NOT_BLANK.search(alias) or len(alias) > MAX_ALIAS_LENGTH:
        raise ValidationError(
            f"{field} must be 1 to {MAX_ALIAS_LENGTH} characters",
            [{"path": field, "message": f"1 to {MAX_ALIAS_LENGTH} characters"}],
        )
    return alias


_SEPARATORS = re.compile(r"[\s-]+")


def digit_code(digits: int) -> Callable[[str], str | None]:
    """A normaliser for :func:`read_code`: exactly ``digits`` ASCII digits once white space and
    hyphens are removed (people type ``123 456`` and ``123-456``)."""

    def normalize(raw: str) -> str | None:
        code = _SEPARATORS.sub("", raw)
        return code if len(code) == digits and code.isascii() and code.isdigit() else None

    return normalize


def read_code(
    params: Mapping[str, Any],
    hint: str,
    normalize: Callable[[str], str | None],
    *,
    key: str = "code",
    field: str = "response.code",
) -> str:
    """The code a person typed, from ``params[key]``, normalised.

    :param hint: what a code looks like, for the person (``"the 6-digit code from the app"``).
    :param normalize: the code in its canonical form, or None when the text cannot be one.
    :raises InvalidResponse: naming ``field`` when the code is missing, not a string (a number
        loses leading zeros) or not well formed. The core counts none of these as a wrong answer.
    """
    raw = params.get(key)
    if raw is None:
        raise InvalidResponse(f"{field} is required: {hint}", field=field)
    if not isinstance(raw, str):
        raise InvalidResponse(f"{field} must be a string: {hint}", field=field)
    code = normalize(raw)
    if code is None:
        raise InvalidResponse(f"{field} is not well formed: {hint}", field=field)
    return code


@attrs.frozen
class Verification:
    """A verifier's success: the credential whose possession was proven.

    The core refuses a credential id that is not among the attempt's ``candidates``.
    """

    credential_id: str
    details: dict[str, Any] = attrs.field(factory=dict)
    #: New public details of the proven credential (recovery codes left); the core stores them
    #: with its ``last_used_at``. None leaves them as they are.
    public: dict[str, Any] | None = None

    def proven_among(self, candidates: Sequence[Credential]) -> Credential:
        """The proven credential, which must be one of the attempt's ``candidates``
        (VerificationFailed otherwise: a method cannot grant on another user's credential)."""
        for candidate in candidates:
            if candidate.id == self.credential_id:
                return candidate
        raise VerificationFailed("the response proves a credential this user does not hold")


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
    #: Public details shown with the credential (``CredentialView.details``), never secrets.
    public: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Begun:
    """``begin``'s answer.

    ``data`` is public: the client receives it (options, a message, a URL). ``state`` is
    private: the core keeps it with the challenge and hands it back to ``verify`` as
    ``attempt.challenge.state``. ``credential_id`` binds the challenge to another of the user's
    credentials of this method than the one the core resolved (a redirect method learns which
    account from the provider); the core refuses one the user does not hold.
    """

    data: dict[str, Any] = attrs.field(factory=dict)
    state: dict[str, Any] = attrs.field(factory=dict)
    credential_id: str | None = None

    @classmethod
    def of(cls, answer: Begun | Mapping[str, Any] | None, scratch: Challenge) -> Begun:
        """A verifier's ``begin`` answer. The older form, still accepted, returned the public
        data and wrote private state and the bound credential into the challenge it was given."""
        if isinstance(answer, Begun):
            return answer
        return cls(data=dict(answer or {}), state=dict(scratch.state), credential_id=scratch.credential_id)


@attrs.frozen
class EnrollmentStep:
    """``begin_enrollment``'s answer: public ``data`` for the person (a URI, options, codes),
    private ``state`` the core keeps with the enrolment for ``complete_enrollment``, and, for
    methods that need no confirmation, the ``credential`` to store at once."""

    data: dict[str, Any] = attrs.field(factory=dict)
    credential: NewCredential | None = None
    state: dict[str, Any] = attrs.field(factory=dict)


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
        """Distribution that provides this method: ``GET /methods`` lists it, and a client
        without the method's client half names it in its "install" error."""

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        """Start a challenge (``attempt.challenge`` is new, with id, expiry and, for redirect
        methods, ``callback_state``; it is a copy the core does not read back). Return
        :class:`Begun`: the public data the client needs, the private state to keep, and the
        credential the challenge is bound to when it is not the one the core resolved. Raise to
        refuse; the core then discards the challenge. (The older form, a plain dict of public
        data with private state written into ``attempt.challenge.state``, is still accepted.)"""
        ...

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        """Check ``attempt.params`` (the response). Return the proven credential or raise
        VerificationFailed / InvalidResponse / ReplayDetected."""
        ...

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        """Start enrolling a credential; ``attempt.challenge`` is the enrolment (a copy). Return
        what the person needs and the private state ``complete_enrollment`` will read."""
        ...

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        """Check the person's answer (``attempt.params``) and return the credential to store."""
        ...


class CommittingVerifier(Protocol):
    """Optional on a verifier: ``commits_transaction = True`` declares that its proof commits to
    the transaction details a step-up is bound to (``attempt.transaction``), so that a bound
    grant shows the person saw and approved them: a passkey's challenge covers their hash, a
    wallet message states them, a code's message names them. ``GET /methods`` reports it as
    ``commitsTransaction``; a scope policy with ``committing_method_required`` accepts only
    such methods for bound step-ups. Without the attribute a method does not commit."""

    commits_transaction: bool


def commits_transaction(verifier: object) -> bool:
    """Whether ``verifier`` declares that its proof commits to transaction details."""
    return getattr(verifier, "commits_transaction", False) is True


@runtime_checkable
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


@runtime_checkable
class CredentialCleanup(Protocol):
    """Optional on a verifier: ``forget(ctx, credential)`` runs after the core deleted one of its
    credentials (unlinked, or replaced by a new enrolment), to remove the method's own records.
    Errors are logged, never raised."""

    async def forget(self, ctx: VerifierContext, credential: Credential) -> None: ...


class BaseVerifier:
    """Defaults for a :class:`Verifier`: a subclass states its ``name`` and ``factor`` and
    only the declarations that differ, then implements ``verify`` and the phases it has.

    The defaults describe a code method that needs a challenge, lives 300 s, has no send
    limits, is not a fallback, and comes from the distribution ``stepup-<name>``. ``begin``
    sends nothing; enrolment is refused until a subclass implements it; every credential is
    eligible; ``forget`` has nothing to clean up.
    """

    name: str
    factor: Factor
    formats: tuple[CredentialFormat, ...] = ()
    interaction: Interaction = Interaction.CODE
    fallback: bool = False
    requires_challenge: bool = True
    challenge_ttl: float = 300.0
    begin_limits: Sequence[RateLimit] = ()
    #: How the method is offered to a person; None: its name, capitalised.
    label: str | None = None
    #: What a client asks the person for when it reads a code itself (``code`` methods).
    prompt: str | None = None
    #: The method's browser half, an ES module (``importlib.resources.files(...) / "browser.js"``)
    #: served at ``{prefix}/methods/<name>/browser.js``; None: the method has none.
    browser_module: Traversable | None = None
    #: The proof commits to the transaction details of a bound step-up (``attempt.transaction``);
    #: see :class:`CommittingVerifier`.
    commits_transaction: bool = False

    _package: str | None = None

    @property
    def package(self) -> str:
        return self._package or f"stepup-{self.name}"

    @package.setter
    def package(self, value: str) -> None:
        self._package = value

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        return Begun()

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        raise NotImplementedError

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        raise EnrollmentFailed(f"{self.name} credentials cannot be enrolled through stepup")

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        raise EnrollmentFailed(f"{self.name} enrolments complete at once; there is nothing to complete")

    def eligible(self, credential: Credential) -> bool:
        return True

    async def forget(self, ctx: VerifierContext, credential: Credential) -> None:
        return None


@attrs.frozen
class Rekeyed:
    """``rekey``'s answer: the credential's new ``data`` (None: nothing changed) and the older
    secret keys it still needs after this, by id, each with the reason (a keyed hash of a value
    the server never keeps cannot be recomputed). :data:`~stepup_core.crypto.LEGACY_KEY_ID`
    names "whichever key wrote values from before key ids"."""

    data: dict[str, Any] | None = None
    still_uses: dict[str, str] = attrs.field(factory=dict)


class CredentialRekey(Protocol):
    """Optional on a verifier: ``rekey(ctx, credential)`` moves the credential's sealed secrets
    to the current secret key (``ctx.keys.reseal``) for ``stepup keys rotate``, and says which
    older keys it still needs. Without it the rotation only reads the key ids of values made by
    ``ctx.keys.seal``/``keyed_hash`` in the credential's data and re-keys nothing."""

    async def rekey(self, ctx: VerifierContext, credential: Credential) -> Rekeyed: ...
