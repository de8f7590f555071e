"""Test support for applications and clients: throwaway methods and a loopback server.

- :class:`PinVerifier`: a code method checked against a PIN fixed at enrolment (no client half
  needed: the client asks for the code). Its name, factor and shape are parameters, so one
  class stands in for ``otp`` (a challenge first), ``totp`` (no challenge) or ``recovery``.
- :class:`KeyVerifier` with :class:`KeyClientMethod` and its actor :class:`LocalKey`: an HMAC
  challenge-response that needs a client half, standing in for ``passkey`` or ``wallet``.
- :func:`throwaway_plugin`: a plugin object registering such methods on a plugin manager.
- :func:`serve_app`: run an aiohttp application on a free loopback port.

These are not secure methods: never register them on a real server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web

from ..crypto import constant_time_equals
from ..errors import EnrollmentFailed, InvalidResponse, VerificationFailed
from ..hookspecs import hookimpl
from ..models import CredentialFormat, Factor, Interaction
from ..verifier import Attempt, EnrollmentStep, NewCredential, RateLimit, Verification, VerifierContext
from .method import Answer, ClientContext, ClientMethod


@attrs.define
class PinVerifier:
    """A code method: the code is a PIN chosen at enrolment (``params: {"pin": ...}``)."""

    name: str = "pin"
    factor: Factor = Factor.REAUTH
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.EMAIL,)
    interaction: Interaction = Interaction.CODE
    fallback: bool = False
    requires_challenge: bool = True
    challenge_ttl: float = 300.0
    begin_limits: Sequence[RateLimit] = ()
    package: str = "stepup-testing"
    sign_in: bool = True

    def _hash(self, ctx: VerifierContext, pin: str) -> str:
        return ctx.keys.keyed_hash(f"test-{self.name}", pin)

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        credential = attempt.credential
        assert credential is not None
        return {
            "verificationType": "sms" if credential.format is CredentialFormat.PHONE_NUMBER else "email",
            "credentialId": credential.id,
            "destination": credential.alias,
        }

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        code = attempt.params.get("code")
        if not isinstance(code, str) or not code:
            raise InvalidResponse("response.code must be a non-empty string", field="response.code")
        pool = [attempt.credential] if attempt.credential is not None else list(attempt.candidates)
        digest = self._hash(ctx, code)
        for credential in pool:
            if credential is not None and constant_time_equals(credential.data.get("pinHash", ""), digest):
                return Verification(credential_id=credential.id)
        raise VerificationFailed("wrong code")

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        pin = attempt.params.get("pin")
        if not isinstance(pin, str) or len(pin) < 4:
            raise EnrollmentFailed("params.pin must be a string of at least 4 characters", field="params.pin")
        return EnrollmentStep(
            credential=NewCredential(
                format=self.formats[0],
                alias=str(attempt.params.get("alias") or f"{self.name} ****"),
                data={"pinHash": self._hash(ctx, pin)},
                sign_in=self.sign_in,
            )
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        raise EnrollmentFailed(f"{self.name} enrolments complete at once")


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
class KeyVerifier:
    """An HMAC challenge-response: the server issues a nonce, the client's key answers it."""

    name: str = "key"
    factor: Factor = Factor.MFA
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.PASSKEY,)
    interaction: Interaction = Interaction.MESSAGE
    fallback: bool = False
    requires_challenge: bool = True
    challenge_ttl: float = 300.0
    begin_limits: Sequence[RateLimit] = ()
    package: str = "stepup-testing"

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        assert attempt.challenge is not None
        nonce = secrets.token_hex(16)
        attempt.challenge.state["nonce"] = nonce
        return {"nonce": nonce}

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        mac = attempt.params.get("mac")
        if not isinstance(mac, str):
            raise InvalidResponse("response.mac must be a string", field="response.mac")
        assert attempt.challenge is not None and attempt.credential is not None
        secret = ctx.keys.unseal(f"test-{self.name}", attempt.credential.data["sealed"])
        if not constant_time_equals(_mac(secret, attempt.challenge.state["nonce"]), mac):
            raise VerificationFailed("the key's answer does not match")
        return Verification(credential_id=attempt.credential.id)

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

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        raise EnrollmentFailed(f"{self.name} enrolments complete at once")


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


@attrs.define(eq=False)
class ThrowawayPlugin:
    """A pluggy plugin registering the given verifiers and client methods."""

    verifiers: Sequence[Any] = ()
    client_methods: Sequence[ClientMethod] = ()

    @hookimpl
    def stepup_register_verifiers(self, register: Callable[[Any], None], config: Any) -> None:
        for verifier in self.verifiers:
            register(verifier)

    @hookimpl
    def stepup_register_client_methods(self, register: Callable[[ClientMethod], None]) -> None:
        for method in self.client_methods:
            register(method)


def throwaway_plugin(verifiers: Sequence[Any] = (), client_methods: Sequence[ClientMethod] = ()) -> ThrowawayPlugin:
    return ThrowawayPlugin(verifiers=tuple(verifiers), client_methods=tuple(client_methods))


@asynccontextmanager
async def serve_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` on ``host`` (a free port unless given); yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        yield f"http://{shown}:{bound[1]}"
    finally:
        await runner.cleanup()
