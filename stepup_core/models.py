"""The values stepup passes around: attrs classes, camelCase on the wire (see serialization)."""

from __future__ import annotations

import enum
from typing import Any

import attrs


class Factor(str, enum.Enum):
    """What a method proves: a second factor (``mfa``) or a repeated sign-in (``reauth``)."""

    MFA = "mfa"
    REAUTH = "reauth"


class CredentialFormat(str, enum.Enum):
    """The reference's credential formats, plus ``custom`` for third-party methods whose
    credentials fit none of them (their ``type`` then names the kind, e.g. ``pin``)."""

    EMAIL = "email"
    PHONE_NUMBER = "phoneNumber"
    BLOCKCHAIN = "blockchain"
    OAUTH = "oauth"
    PASSKEY = "passkey"
    TOTP = "totp"
    RECOVERY_CODE = "recoveryCode"
    CUSTOM = "custom"


class Interaction(str, enum.Enum):
    """The shape of a method's exchange, so clients and UIs know what to do with a challenge.

    - ``code``: a person types a code (OTP, TOTP, recovery code).
    - ``options``: the server issues options, an authenticator answers (passkey).
    - ``message``: the server issues a message, a key signs it (wallet).
    - ``redirect``: the person follows a URL; a callback on the server completes the
      challenge and the client polls its status (social).
    """

    CODE = "code"
    OPTIONS = "options"
    MESSAGE = "message"
    REDIRECT = "redirect"


class TokenBehavior(str, enum.Enum):
    SINGLE_USE = "single_use"
    TIME_BOUND = "time_bound"


class Route(str, enum.Enum):
    MFA = "mfa"
    REAUTH = "reauth"


class ChallengeStatus(str, enum.Enum):
    PENDING = "pending"
    VERIFIED = "verified"  # completed elsewhere (a redirect callback); the grant waits for pickup
    FAILED = "failed"
    CONSUMED = "consumed"


class ChallengePurpose(str, enum.Enum):
    STEP_UP = "stepUp"
    ENROLLMENT = "enrollment"


@attrs.frozen
class Principal:
    """Who is calling. The application supplies it; stepup never owns passwords or sessions."""

    user_id: str
    session_id: str
    sign_in_credential_id: str | None = None
    #: How the session was signed in (RFC 9470, from the application's session token): the
    #: authentication context class, the methods (RFC 8176 ``amr`` values) and when the person
    #: authenticated (epoch seconds). A scope policy may accept a fresh, strong enough sign-in
    #: as the step-up.
    acr: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: float | None = None


@attrs.define
class Credential:
    """A way a user can prove who they are.

    ``identifier`` (the email address, phone number, wallet address, provider subject) and
    ``data`` (secrets, public keys, counters) are method-private and never leave the server;
    ``public`` is what the method chose to show (``CredentialView.details``).
    :class:`CredentialView` is what the wire shows.
    """

    id: str
    user_id: str
    method: str
    format: CredentialFormat
    factor: Factor
    created_at: float
    type: str | None = None
    alias: str | None = None
    sign_in: bool = False
    is_default: bool = False
    last_used_at: float | None = None
    identifier: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    #: Supplied by the application through ``stepup_user_credentials``; not in our store.
    external: bool = False
    #: Method-chosen public details, shown as ``CredentialView.details`` (never secrets).
    public: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        # Older records (and applications) kept the public details in ``data["public"]``.
        legacy = self.data.get("public")
        if isinstance(legacy, dict):
            self.data = {k: v for k, v in self.data.items() if k != "public"}
            self.public = {**legacy, **self.public}

    def view(self) -> CredentialView:
        return CredentialView(
            id=self.id,
            method=self.method,
            format=self.format,
            factor=self.factor,
            type=self.type,
            alias=self.alias,
            sign_in=self.sign_in,
            is_default=self.is_default,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            details=dict(self.public),
        )


#: A credential's alias: 1 to this many characters, not all blank.
MAX_ALIAS_LENGTH = 64
#: Matches an alias that is not all blank (the rule the server and its OpenAPI document share).
ALIAS_NOT_BLANK = r"\S"


@attrs.frozen
class CredentialView:
    """The public face of a credential (never secrets). ``details`` is method-chosen public data,
    for example the number of recovery codes left."""

    id: str
    method: str
    format: CredentialFormat
    factor: Factor
    type: str | None = None
    alias: str | None = None
    sign_in: bool = False
    is_default: bool = False
    created_at: float = 0.0
    last_used_at: float | None = None
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CredentialRemoval:
    """The answer to unlinking a credential when others had to go with it: the recovery codes
    (a fallback, which cannot step up on its own) of a user who removed the last passkey or
    authenticator app. ``reason`` says so in words a person can read."""

    credential_id: str
    also_removed: tuple[CredentialView, ...]
    reason: str


@attrs.define
class Challenge:
    """One attempt at a step-up or an enrolment. The core owns its lifecycle (ids, expiry,
    single use, binding to user and session, attempt budget); a verifier keeps what it needs in
    ``state`` (never sent to the client)."""

    id: str
    method: str
    purpose: ChallengePurpose
    user_id: str
    session_id: str
    created_at: float
    expires_at: float
    requested_scopes: tuple[str, ...] = ()
    credential_id: str | None = None
    status: ChallengeStatus = ChallengeStatus.PENDING
    #: Random value a redirect method puts in its URL (OAuth ``state``); the callback is found by it.
    callback_state: str | None = None
    state: dict[str, Any] = attrs.field(factory=dict)
    #: Credential proven by a callback, waiting for the owner's status poll to mint the grant.
    verified_credential_id: str | None = None
    failure: str | None = None
    #: The store key of the place this record holds among its user's live records (the cap on
    #: open challenges and pending enrolments), freed when it is used up.
    live_slot: str | None = None


@attrs.frozen
class Grant:
    """A minted elevated access token, as stored: only the SHA-256 of the token is kept."""

    token_hash: str
    user_id: str
    session_id: str
    scopes: tuple[str, ...]
    method: str
    issued_at: float
    expires_at: float
    single_use: bool
    credential_id: str | None = None
    #: The authentication the grant stands for (RFC 9470): the context class it satisfies, the
    #: methods (RFC 8176 ``amr`` values) and when the person authenticated. For a step-up that
    #: is the verification (``issued_at``); for an accepted sign-in, the sign-in.
    acr: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: float | None = None
    #: The signing key of a grant issued as a JWT (None: an opaque ``sut_`` token).
    key_id: str | None = None


@attrs.frozen
class IssuedToken:
    """What the caller receives after a successful verification: the only time the raw token exists."""

    elevated_access_token: str
    scopes: tuple[str, ...]
    expires_at: float
    single_use: bool
    method: str


@attrs.frozen
class StepUpVote:
    """One ``stepup_check`` implementation's opinion.

    ``required``: this implementation wants step-up for the scope. ``accept_existing_token``:
    a valid elevated token already held satisfies this vote; False demands a fresh verification
    (a risk signal, say).
    """

    required: bool
    reason: str
    accept_existing_token: bool = True


@attrs.frozen
class CheckResult:
    """The StepUpCheck answer, the body of ``POST /stepup/check``."""

    scope: str
    is_required: bool
    route: Route
    credentials: tuple[CredentialView, ...] = ()
    default_credential_id: str | None = None
    reasons: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@attrs.frozen
class MethodInfo:
    name: str
    factor: Factor
    formats: tuple[CredentialFormat, ...]
    interaction: Interaction
    fallback: bool = False
    requires_challenge: bool = True
    plugin: str | None = None
    #: The distribution that provides the method (a client without its client half names it).
    package: str | None = None
    #: How the method is offered to a person ("Authenticator app").
    label: str | None = None
    #: What a client asks for when it reads the code itself ("Code from your authenticator app").
    prompt: str | None = None
    #: URL path of the method's browser half (``{prefix}/methods/{name}/browser.js``), when its
    #: plugin ships one: ``stepup.js`` imports it to run the method in a page.
    browser_module: str | None = None


@attrs.frozen
class ChallengeStart:
    """Body of ``POST /stepup/challenges``: the method's public data is in ``data``."""

    challenge_id: str
    method: str
    expires_at: float
    interaction: Interaction
    credential_id: str | None = None
    requested_scopes: tuple[str, ...] = ()
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ChallengeState:
    """Body of ``GET /stepup/challenges/{id}``; ``grant`` is present once, when a completed
    challenge is picked up by its owner."""

    challenge_id: str
    method: str
    status: ChallengeStatus
    expires_at: float
    failure: str | None = None
    grant: IssuedToken | None = None
    #: For an enrolment completed by redirect: the credential it linked.
    credential_id: str | None = None


@attrs.frozen
class EnrollmentStart:
    """Body of ``POST /stepup/enrollments``. When ``credential`` is set the enrolment completed
    at once (recovery codes); otherwise finish with ``POST /stepup/enrollments/{id}``."""

    enrollment_id: str
    method: str
    expires_at: float
    data: dict[str, Any] = attrs.field(factory=dict)
    credential: CredentialView | None = None


@attrs.frozen
class CodeDelivery:
    """A one-time code to send. ``channel`` is ``email`` or ``sms``."""

    channel: str
    address: str
    code: str
    purpose: str
    expires_at: float
    user_id: str
    app_name: str = "stepup"


@attrs.frozen
class Message:
    """A message to a person that is not a code: a security notice. ``channel`` is ``email``
    or ``sms``; ``html`` is the HTML alternative of an email (None for SMS)."""

    channel: str
    address: str
    subject: str
    text: str
    user_id: str
    #: What the message is about (``credential_linked``, ``locked_out``...).
    kind: str
    html: str | None = None
    app_name: str = "stepup"


class CredentialChangeKind(str, enum.Enum):
    LINKED = "linked"
    UNLINKED = "unlinked"
    #: A new credential replaced the user's earlier ones of its method (recovery codes regenerated).
    RESET = "reset"


@attrs.frozen
class CredentialChange:
    """A credential was linked, unlinked or reset, for ``stepup_credential_changed``.

    ``credential`` is the one linked (for ``reset``, the new one) or unlinked; ``replaced`` the
    ones a reset removed. They are the stored records, with their method-private ``identifier``:
    this never leaves the server.
    """

    kind: CredentialChangeKind
    user_id: str
    session_id: str
    at: float
    credential: Credential
    replaced: tuple[Credential, ...] = ()


@attrs.frozen
class Operation:
    """A piece of work stepup timed, for ``stepup_operation``.

    ``name``: ``check`` (a StepUpCheck answered over HTTP), ``guard`` (the protected-route
    guard), ``verifier.begin``, ``verifier.verify``, ``verifier.begin_enrollment`` or
    ``verifier.complete_enrollment``. ``outcome``: ``success``, or what the operation decided
    (``required``, ``not_required``, ``granted``), or the error's stable ``code`` (``error``
    for an exception that is not a stepup error). ``attributes`` hold only names the server
    chose (``method``, ``scope``): never a secret, a code, a token or an address.
    """

    name: str
    outcome: str
    #: Unix time the operation started, in seconds.
    started_at: float
    #: Seconds it took (a monotonic clock).
    duration: float
    attributes: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class AuditEvent:
    """Every outcome the core sees. ``outcome``: ``success``, ``failure``, ``info`` or ``warning``."""

    type: str
    outcome: str
    at: float
    user_id: str | None = None
    session_id: str | None = None
    method: str | None = None
    credential_id: str | None = None
    challenge_id: str | None = None
    scopes: tuple[str, ...] = ()
    reason: str | None = None
    details: dict[str, Any] = attrs.field(factory=dict)


# --- request bodies of the HTTP protocol (structured by the one converter) ---------------


@attrs.frozen
class CheckRequest:
    scope: str


@attrs.frozen
class ChallengeRequest:
    method: str
    credential_id: str | None = None
    requested_scopes: tuple[str, ...] = ()
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class VerifyRequest:
    method: str
    response: dict[str, Any]
    challenge_id: str | None = None
    credential_id: str | None = None
    requested_scopes: tuple[str, ...] = ()


@attrs.frozen
class EnrollmentRequest:
    method: str
    params: dict[str, Any] = attrs.field(factory=dict)
    alias: str | None = None


@attrs.frozen
class EnrollmentCompletion:
    response: dict[str, Any]


@attrs.frozen
class CredentialUpdate:
    alias: str | None = None
    is_default: bool | None = None
