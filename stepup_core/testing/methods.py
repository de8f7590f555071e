"""Throwaway methods for tests of stepup, of applications and of clients.

- :class:`ThrowawayVerifier`: the declarations a verifier carries, for the methods here and
  a test's own to subclass.
- :class:`PinVerifier`: a code method checked against a PIN fixed at enrolment (no client half
  needed: the client asks for the code). Its name, factor and shape are parameters, so one
  class stands in for ``otp`` (a challenge first), ``totp`` (no challenge) or ``recovery``
  (a fallback), or for an MFA PIN whose enrolment is confirmed (``confirm=True``).
- :class:`KeyVerifier` with :class:`KeyClientMethod` and its actor :class:`LocalKey`: an HMAC
  challenge-response that needs a client half, standing in for ``passkey`` or ``wallet``.
- :class:`RedirectVerifier`: a redirect method whose pretend provider sends the browser back
  to stepup's callback route; ``code=approved`` there passes.
- :class:`ThrowawayPlugin`: a plugin registering such methods on a plugin manager and standing
  in for the application: it supplies the application's own credentials and records audit
  events.

These are not secure methods: never register them on a real server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import attrs

from ..client.method import Answer, ClientContext, ClientMethod
from ..crypto import SecretKeys, constant_time_equals
from ..errors import EnrollmentFailed, InvalidResponse, VerificationFailed
from ..hookspecs import hookimpl
from ..models import AuditEvent, Credential, CredentialFormat, Factor, Interaction, Principal
from ..verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    RateLimit,
    Verification,
    VerifierContext,
    read_code,
)

#: The callback parameter ``code`` with which :class:`RedirectVerifier`'s provider approves.
APPROVED = "approved"


@attrs.define
class ThrowawayVerifier(BaseVerifier):
    """The declarations every verifier carries, as keyword arguments with the defaults of a
    re-auth code method that needs a challenge. The throwaway methods here (and a test's own)
    subclass it, redeclaring only the defaults they change."""

    name: str = "throwaway"
    factor: Factor = Factor.REAUTH
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.EMAIL,)
    interaction: Interaction = Interaction.CODE
    fallback: bool = False
    requires_challenge: bool = True
    challenge_ttl: float = 300.0
    begin_limits: Sequence[RateLimit] = ()
    package: str = "stepup-testing"


@attrs.define
class PinVerifier(ThrowawayVerifier):
    """A code method: the code is a PIN of at least 4 characters chosen at enrolment
    (``params.pin``). Without ``confirm`` the credential is stored at once; with it, enrolment
    completes when ``response.pin`` repeats the PIN. ``begin`` sends nothing; it names the
    credential and where a code would go. The PIN is kept as a keyed hash (``pinHash``)."""

    name: str = "pin"
    sign_in: bool = True
    confirm: bool = False

    def _hash(self, ctx: VerifierContext, pin: str) -> str:
        return self.credential_data(ctx.keys, pin)["pinHash"]

    def credential_data(self, keys: SecretKeys, pin: str) -> dict[str, str]:
        """A credential's ``data`` for ``pin``, for a credential a test stores itself (as an
        application adds a device behind stepup's back)."""
        return {"pinHash": keys.keyed_hash(f"test-{self.name}", pin)}

    def _credential(self, attempt: Attempt, digest: str) -> NewCredential:
        return NewCredential(
            format=self.formats[0],
            alias=str(attempt.params.get("alias") or "PIN"),
            data={"pinHash": digest},
            sign_in=self.sign_in,
        )

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        credential = attempt.require_credential()
        data: dict[str, Any] = {"credentialId": credential.id, "destination": credential.alias}
        if credential.format is CredentialFormat.PHONE_NUMBER:
            data["verificationType"] = "sms"
        elif credential.format is CredentialFormat.EMAIL:
            data["verificationType"] = "email"
        return Begun(data=data)

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        code = read_code(attempt.params, "the PIN", lambda raw: raw or None)
        credential = attempt.require_credential()
        if not ctx.keys.verify_keyed_hash(f"test-{self.name}", code, str(credential.data.get("pinHash", ""))):
            raise VerificationFailed("wrong PIN")
        return Verification(credential_id=credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        pin = attempt.params.get("pin")
        if not isinstance(pin, str) or len(pin) < 4:
            raise EnrollmentFailed("params.pin must be a string of at least 4 characters", field="params.pin")
        if not self.confirm:
            return EnrollmentStep(credential=self._credential(attempt, self._hash(ctx, pin)))
        return EnrollmentStep(
            data={"confirm": "send the same PIN again as response.pin"}, state={"pinHash": self._hash(ctx, pin)}
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        if not self.confirm:
            raise EnrollmentFailed(f"{self.name} enrolments complete at once")
        pin = attempt.params.get("pin")
        stored = str(attempt.require_challenge().state["pinHash"])
        if not isinstance(pin, str) or not ctx.keys.verify_keyed_hash(f"test-{self.name}", pin, stored):
            raise VerificationFailed("the PINs differ")
        return self._credential(attempt, self._hash(ctx, pin))


def _mac(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


@attrs.define
class LocalKey:
    """The actor of :class:`KeyClientMethod`: a secret that answers nonces."""

    secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(32))
    answered: int = 0

    def sign(self, nonce: str) -> str:
        self.answered += 1
        return _mac(self.secret, nonce)


@attrs.define
class KeyVerifier(ThrowawayVerifier):
    """An HMAC challenge-response: the server issues a nonce, the client's key answers it."""

    name: str = "key"
    factor: Factor = Factor.MFA
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.PASSKEY,)
    interaction: Interaction = Interaction.MESSAGE

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        nonce = secrets.token_hex(16)
        return Begun(data={"nonce": nonce}, state={"nonce": nonce})

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        mac = attempt.params.get("mac")
        if not isinstance(mac, str):
            raise InvalidResponse("response.mac must be a string", field="response.mac")
        credential = attempt.require_credential()
        secret = ctx.keys.unseal(f"test-{self.name}", credential.data["sealed"])
        if not constant_time_equals(_mac(secret, attempt.require_challenge().state["nonce"]), mac):
            raise VerificationFailed("the key's answer does not match")
        return Verification(credential_id=credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        key = attempt.params.get("key")
        try:
            secret = bytes.fromhex(key) if isinstance(key, str) else b""
        except ValueError:
            secret = b""
        if len(secret) < 16:
            raise EnrollmentFailed("params.key must be at least 16 bytes, hex", field="params.key")
        return EnrollmentStep(
            credential=NewCredential(
                format=self.formats[0],
                alias=str(attempt.params.get("alias") or f"{self.name} key"),
                data={"sealed": ctx.keys.seal(f"test-{self.name}", secret)},
            )
        )


@attrs.define
class KeyClientMethod:
    """The client half of :class:`KeyVerifier`. The key comes from the ``key``, ``signer`` or
    ``authenticator`` option, else the actor."""

    name: str = "key"
    package: str = "stepup-testing"

    def _key(self, ctx: ClientContext) -> LocalKey:
        for option in ("key", "signer", "authenticator"):
            value = ctx.options.get(option)
            if isinstance(value, LocalKey):
                return value
        if isinstance(ctx.actor, LocalKey):
            return ctx.actor
        raise VerificationFailed(f"no key to answer the {self.name} challenge with: pass key= or an actor")

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        nonce = (challenge.get("data") or {}).get("nonce")
        if not isinstance(nonce, str):
            raise InvalidResponse("the challenge has no nonce", field="data.nonce")
        return Answer(response={"mac": self._key(ctx).sign(nonce)})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        return {"key": self._key(ctx).secret.hex()}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        return {}

    def unattended(self) -> LocalKey:
        return LocalKey()


@attrs.define
class RedirectVerifier(ThrowawayVerifier):
    """A redirect method. ``begin`` (and enrolment) answer ``authorizationUrl``, the pretend
    provider's page carrying stepup's callback URL as ``redirect_uri`` and the challenge's
    ``state`` (also given on its own as ``state``); with ``provider_url=None`` the URL is the
    callback itself. The browser comes back to the callback route with ``code``:
    :data:`APPROVED` passes and anything else is a refusal; ``sub`` names the linked account.
    With ``link_at_once`` enrolment stores the account without the redirect."""

    name: str = "redirect"
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.OAUTH,)
    interaction: Interaction = Interaction.REDIRECT
    provider_url: str | None = "https://provider.test/authorize"
    link_at_once: bool = False

    def _redirect(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        state = attempt.require_challenge().callback_state
        assert state, "the core gives a redirect method's challenge a callback state"
        if self.provider_url is None:
            url = f"{ctx.callback_url(self.name)}?{urlencode({'state': state})}"
        else:
            url = f"{self.provider_url}?{urlencode({'redirect_uri': ctx.callback_url(self.name), 'state': state})}"
        return {"authorizationUrl": url, "state": state}

    def _account(self, attempt: Attempt) -> NewCredential:
        return NewCredential(
            format=self.formats[0],
            alias="Test provider",
            identifier=str(attempt.params.get("sub") or "provider-account"),
        )

    def _ensure_approved(self, attempt: Attempt) -> None:
        code = attempt.params.get("code")
        if code != APPROVED:
            raise VerificationFailed(f"the provider answered {code!r}")

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        return Begun(data=self._redirect(ctx, attempt))

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        self._ensure_approved(attempt)
        return Verification(attempt.require_credential().id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        if self.link_at_once:
            return EnrollmentStep(credential=self._account(attempt))
        return EnrollmentStep(data=self._redirect(ctx, attempt))

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        self._ensure_approved(attempt)
        return self._account(attempt)


def _verifier_list(verifiers: Iterable[Any]) -> list[Any]:
    return list(verifiers)


def _client_method_list(methods: Iterable[ClientMethod]) -> list[ClientMethod]:
    return list(methods)


@attrs.define(eq=False)
class ThrowawayPlugin:
    """A pluggy plugin for tests: it registers ``verifiers`` and ``client_methods`` (lists a
    test may add to before the service starts), supplies ``app_credentials[user_id]`` as the
    application's own credentials (a sign-in email address, an embedded wallet) and records
    every audit event in ``events``."""

    verifiers: list[Any] = attrs.field(factory=list, converter=_verifier_list)
    client_methods: list[ClientMethod] = attrs.field(factory=list, converter=_client_method_list)
    app_credentials: dict[str, list[Credential]] = attrs.field(factory=dict)
    events: list[AuditEvent] = attrs.field(factory=list)

    @hookimpl
    def stepup_register_verifiers(self, register: Callable[[Any], None], config: Any) -> None:
        for verifier in self.verifiers:
            register(verifier)

    @hookimpl
    def stepup_register_client_methods(self, register: Callable[[ClientMethod], None]) -> None:
        for method in self.client_methods:
            register(method)

    @hookimpl
    def stepup_user_credentials(self, principal: Principal) -> list[Credential]:
        return list(self.app_credentials.get(principal.user_id, []))

    @hookimpl
    def stepup_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    def verifier(self, name: str) -> Any:
        """The registered verifier called ``name``."""
        return next(v for v in self.verifiers if v.name == name)

    def types(self) -> list[str]:
        """The type of every recorded event, in order."""
        return [event.type for event in self.events]

    def of_type(self, type: str) -> list[AuditEvent]:
        """The recorded events of one type."""
        return [event for event in self.events if event.type == type]
