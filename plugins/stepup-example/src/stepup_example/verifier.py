"""The server half: a PIN the person chose at enrolment, asked for on every step-up.

The core does the rest: the challenge (single use, expiry, user and session binding), the
attempt budget and lockout, minting, events. This verifier only answers "does this PIN match?".
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import attrs

from stepup_core.crypto import constant_time_equals
from stepup_core.errors import EnrollmentFailed, InvalidResponse, VerificationFailed
from stepup_core.models import CredentialFormat, Factor, Interaction
from stepup_core.verifier import Attempt, EnrollmentStep, NewCredential, RateLimit, Verification, VerifierContext

HASH_PURPOSE = "pin"


@attrs.frozen
class PinSettings:
    """``[plugins.pin]`` in stepup.toml."""

    min_length: int = 6
    max_length: int = 12
    challenge_ttl: float = 120.0


def read_pin(params: dict[str, Any], field: str, settings: PinSettings) -> str:
    """The PIN from a request, or InvalidResponse naming the field."""
    pin = params.get("pin")
    if not isinstance(pin, str):
        raise InvalidResponse(f"{field} must be a string of digits", field=field)
    if not pin.isascii() or not pin.isdigit() or not settings.min_length <= len(pin) <= settings.max_length:
        raise InvalidResponse(
            f"{field} must be {settings.min_length} to {settings.max_length} digits", field=field
        )
    return pin


@attrs.define
class PinVerifier:
    #: The browser half, served at ``{prefix}/methods/pin/browser.js`` (docs/browser.md).
    browser_module = files("stepup_example") / "browser.js"
    settings: PinSettings
    name: str = "pin"
    factor: Factor = Factor.MFA
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.CUSTOM,)
    interaction: Interaction = Interaction.CODE
    fallback: bool = False
    requires_challenge: bool = True
    begin_limits: tuple[RateLimit, ...] = ()
    package: str = "stepup-example"
    challenge_ttl: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.challenge_ttl = self.settings.challenge_ttl

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        return {"minLength": self.settings.min_length, "maxLength": self.settings.max_length}

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        pin = read_pin(attempt.params, "response.pin", self.settings)
        credential = attempt.require_credential()
        if not constant_time_equals(ctx.keys.keyed_hash(HASH_PURPOSE, pin), credential.data["pinHash"]):
            raise VerificationFailed("wrong PIN")
        return Verification(credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        assert attempt.challenge is not None
        pin = read_pin(attempt.params, "params.pin", self.settings)
        attempt.challenge.state["pinHash"] = ctx.keys.keyed_hash(HASH_PURPOSE, pin)
        return EnrollmentStep(data={"confirm": "send the same PIN again to finish"})

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        assert attempt.challenge is not None
        pin = read_pin(attempt.params, "response.pin", self.settings)
        expected = attempt.challenge.state.get("pinHash", "")
        if not constant_time_equals(ctx.keys.keyed_hash(HASH_PURPOSE, pin), expected):
            raise VerificationFailed("the two PINs differ")
        if any(c.data.get("pinHash") == expected for c in attempt.candidates):
            raise EnrollmentFailed("this PIN is already enrolled")
        return NewCredential(format=CredentialFormat.CUSTOM, type="pin", alias="PIN", data={"pinHash": expected})
