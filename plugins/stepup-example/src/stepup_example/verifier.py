"""The server half: a PIN the person chose at enrolment, asked for on every step-up.

The core does the rest: the challenge (single use, expiry, user and session binding), the
attempt budget and lockout, minting, events. This verifier only answers "does this PIN match?".
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import attrs

from stepup_core.errors import EnrollmentFailed, VerificationFailed
from stepup_core.models import CredentialFormat, Factor
from stepup_core.verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    Verification,
    VerifierContext,
    read_code,
)

HASH_PURPOSE = "pin"


@attrs.frozen
class PinSettings:
    """``[plugins.pin]`` in stepup.toml."""

    min_length: int = 6
    max_length: int = 12
    challenge_ttl: float = 120.0


def read_pin(params: dict[str, Any], field: str, settings: PinSettings) -> str:
    """The PIN from a request (the core's shared code reader), or InvalidResponse naming the field."""

    def well_formed(pin: str) -> str | None:
        fits = settings.min_length <= len(pin) <= settings.max_length
        return pin if fits and pin.isascii() and pin.isdigit() else None

    hint = f"{settings.min_length} to {settings.max_length} digits"
    return read_code(params, hint, well_formed, key="pin", field=field)


class PinVerifier(BaseVerifier):
    """Declares only what differs from :class:`~stepup_core.verifier.BaseVerifier`'s defaults
    (a code method that needs a challenge)."""

    #: The browser half, served at ``{prefix}/methods/pin/browser.js`` (docs/browser.md).
    browser_module = files("stepup_example") / "browser.js"

    name = "pin"
    factor = Factor.MFA
    formats = (CredentialFormat.CUSTOM,)
    #: The distribution is not called ``stepup-pin``.
    package = "stepup-example"

    def __init__(self, settings: PinSettings) -> None:
        self.settings = settings
        self.challenge_ttl = settings.challenge_ttl

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        return Begun(data={"minLength": self.settings.min_length, "maxLength": self.settings.max_length})

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        pin = read_pin(attempt.params, "response.pin", self.settings)
        credential = attempt.require_credential()
        # The stored hash names the secret key it was made with; verify_keyed_hash uses that key,
        # so the PIN still verifies after the operator rotates to a new key.
        if not ctx.keys.verify_keyed_hash(HASH_PURPOSE, pin, str(credential.data["pinHash"])):
            raise VerificationFailed("wrong PIN")
        return Verification(credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        pin = read_pin(attempt.params, "params.pin", self.settings)
        return EnrollmentStep(
            data={"confirm": "send the same PIN again to finish"},
            state={"pinHash": ctx.keys.keyed_hash(HASH_PURPOSE, pin)},
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        pin = read_pin(attempt.params, "response.pin", self.settings)
        expected = str(attempt.require_challenge().state.get("pinHash", ""))
        if not ctx.keys.verify_keyed_hash(HASH_PURPOSE, pin, expected):
            raise VerificationFailed("the two PINs differ")
        if any(c.data.get("pinHash") == expected for c in attempt.candidates):
            raise EnrollmentFailed("this PIN is already enrolled")
        return NewCredential(format=CredentialFormat.CUSTOM, type="pin", alias="PIN", data={"pinHash": expected})
