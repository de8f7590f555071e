"""The server half of ``otp``: send a one-time code by email or SMS and check it.

What the core already does for every method and this verifier therefore does not: challenge
ids, expiry, single use and binding to user and session; the attempt budget per challenge;
per-user lockout; the send limits in :attr:`OtpVerifier.begin_limits`, counted per credential.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from stepup_core.errors import (
    ChallengeExpired,
    EnrollmentFailed,
    NoEligibleCredential,
    ValidationError,
    VerificationFailed,
)
from stepup_core.models import Challenge, CodeDelivery, Credential, CredentialFormat, Factor
from stepup_core.store.base import GRACE_SECONDS, make_key
from stepup_core.verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    RateLimit,
    Verification,
    VerifierContext,
    digit_code,
    read_code,
)

from .addresses import (
    InvalidAddress,
    mask_email,
    mask_phone_number,
    normalize_email,
    normalize_phone_number,
    same_email,
)
from .settings import OtpSettings

METHOD_NAME = "otp"
PACKAGE = "stepup-otp"
CODE_DIGITS = 6
HASH_PURPOSE = "otp"
HOUR = 3600.0

CHANNELS = {CredentialFormat.EMAIL: "email", CredentialFormat.PHONE_NUMBER: "sms"}
ENROLLMENT_FIELDS = {"email": CredentialFormat.EMAIL, "phoneNumber": CredentialFormat.PHONE_NUMBER}


def new_code() -> str:
    """Six decimal digits from the operating system's CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(ctx: VerifierContext, challenge: Challenge, code: str) -> str:
    """What the challenge keeps of its code: an HMAC bound to the challenge id."""
    return ctx.keys.keyed_hash(HASH_PURPOSE, challenge.id + code)


def normalize_identifier(fmt: CredentialFormat, value: object, field: str) -> str:
    if fmt is CredentialFormat.EMAIL:
        return normalize_email(value, field)
    if fmt is CredentialFormat.PHONE_NUMBER:
        return normalize_phone_number(value, field)
    raise InvalidAddress(f"{field}: otp sends codes to email addresses and phone numbers only", field)


def mask(fmt: CredentialFormat, identifier: str) -> str:
    return mask_email(identifier) if fmt is CredentialFormat.EMAIL else mask_phone_number(identifier)


def same_identifier(fmt: CredentialFormat, a: str, b: str) -> bool:
    return same_email(a, b) if fmt is CredentialFormat.EMAIL else a == b


async def _check_code(ctx: VerifierContext, challenge: Challenge, params: dict[str, Any]) -> None:
    code = read_code(params, f"the {CODE_DIGITS}-digit code we sent", digit_code(CODE_DIGITS))
    expected = challenge.state.get("codeHash")
    latest_key = challenge.state.get("latestKey")
    code_expires_at = challenge.state.get("codeExpiresAt")
    if (
        not isinstance(expected, str)
        or not isinstance(latest_key, str)
        or not isinstance(code_expires_at, (int, float))
    ):
        raise VerificationFailed("no code was sent for this challenge: request a new code")
    if await ctx.store.get(latest_key) != challenge.id:
        raise VerificationFailed("a newer code was sent since this one: enter the latest code")
    if code_expires_at <= ctx.clock.now():
        raise ChallengeExpired("the code expired; ask for a new one", challengeId=challenge.id)
    if not ctx.keys.verify_keyed_hash(HASH_PURPOSE, challenge.id + code, expected):
        raise VerificationFailed("the code is not correct")


class OtpVerifier(BaseVerifier):
    """One-time codes by email (``email`` credentials) or SMS (``phoneNumber`` credentials)."""

    #: The browser half, served at ``{prefix}/methods/otp/browser.js`` (docs/browser.md).
    browser_module = files("stepup_otp") / "browser.js"

    name = METHOD_NAME
    factor = Factor.REAUTH
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.EMAIL, CredentialFormat.PHONE_NUMBER)
    label = "One-time code"

    def __init__(self, settings: OtpSettings | None = None) -> None:
        self.settings = settings or OtpSettings()
        #: The channels codes go over (the core checks each has a real sender at start).
        self.delivery_channels: tuple[str, ...] = self.settings.channels
        self.challenge_ttl: float = self.settings.code_ttl
        self.begin_limits: Sequence[RateLimit] = (
            RateLimit(1, self.settings.resend_interval),
            RateLimit(self.settings.max_sends_per_hour, HOUR),
        )

    async def _send(
        self,
        ctx: VerifierContext,
        attempt: Attempt,
        challenge: Challenge,
        fmt: CredentialFormat,
        identifier: str,
        purpose: str,
        thread: str,
    ) -> dict[str, Any]:
        """Send a fresh code for ``challenge``; returns the state the challenge keeps to check
        it. Only the newest code of a ``thread`` (one credential, or one address being linked)
        is accepted: a resend retires the earlier ones."""
        code = new_code()
        expires_at = min(challenge.expires_at, ctx.clock.now() + self.settings.code_ttl)
        state: dict[str, Any] = {"codeHash": code_hash(ctx, challenge, code), "codeExpiresAt": expires_at}
        await ctx.deliver_code(
            CodeDelivery(
                channel=CHANNELS[fmt],
                address=identifier,
                code=code,
                purpose=purpose,
                expires_at=expires_at,
                user_id=attempt.principal.user_id,
                app_name=ctx.app_name,
            )
        )
        latest_key = make_key("otp-latest", attempt.principal.user_id, thread)
        state["latestKey"] = latest_key
        await ctx.store.put(latest_key, challenge.id, ttl=expires_at - ctx.clock.now() + GRACE_SECONDS)
        return state

    async def _limit_enrollment_sends(self, ctx: VerifierContext, attempt: Attempt, destination: str) -> None:
        """Send limits for codes to addresses not linked yet, which the core cannot count per
        credential: every ``begin_limits`` entry per destination (however many accounts ask),
        and the widest one per user (however many addresses one account tries)."""
        checks = [("to", destination, limit) for limit in self.begin_limits]
        widest = max(self.begin_limits, key=lambda limit: limit.window)
        checks.append(("user", attempt.principal.user_id, widest))
        for kind, subject, limit in checks:
            await ctx.hit_rate_limit(make_key("otp-enroll", kind, subject), limit)

    def eligible(self, credential: Credential) -> bool:
        """Only credentials whose channel this server sends over can step up."""
        return CHANNELS.get(credential.format) in self.delivery_channels

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        challenge = attempt.require_challenge()
        credential = attempt.require_credential()
        if credential.format not in CHANNELS or not credential.identifier:
            raise NoEligibleCredential(f"credential {credential.id} cannot receive one-time codes")
        if not self.eligible(credential):
            raise NoEligibleCredential(
                f"this server does not send codes by {CHANNELS[credential.format]}; choose another credential"
            )
        try:
            identifier = normalize_identifier(credential.format, credential.identifier, "identifier")
        except ValidationError:
            raise NoEligibleCredential(
                f"credential {credential.id} does not hold a deliverable "
                f"{'email address' if credential.format is CredentialFormat.EMAIL else 'phone number'}"
            ) from None
        state = await self._send(
            ctx, attempt, challenge, credential.format, identifier, "stepUp", f"credential:{credential.id}"
        )
        data = {
            "verificationType": CHANNELS[credential.format],
            "credentialId": credential.id,
            "destination": mask(credential.format, identifier),
            # Seconds before another code may be asked for (a prompt's "send a new code" waits).
            "resendAfter": self.settings.resend_interval,
        }
        return Begun(data=data, state={**state, "credentialId": credential.id})

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        challenge = attempt.require_challenge()
        await _check_code(ctx, challenge, attempt.params)
        credential_id = challenge.state.get("credentialId")
        if not isinstance(credential_id, str):
            raise VerificationFailed("this challenge was not issued by otp: request a new code")
        return Verification(credential_id=credential_id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        challenge = attempt.require_challenge()
        fmt, identifier = _enrollment_target(attempt.params)
        if CHANNELS[fmt] not in self.delivery_channels:
            field = next(key for key, value in ENROLLMENT_FIELDS.items() if value is fmt)
            message = f"this server does not send codes by {CHANNELS[fmt]}; link an address it can reach"
            raise ValidationError(message, [{"path": f"params.{field}", "message": message}])
        for existing in attempt.candidates:
            if existing.format is fmt and existing.identifier and same_identifier(fmt, existing.identifier, identifier):
                raise EnrollmentFailed(
                    f"{mask(fmt, identifier)} is already linked to this account", credentialId=existing.id
                )
        destination = ctx.keys.keyed_hash("otp-destination", identifier.casefold())
        await self._limit_enrollment_sends(ctx, attempt, destination)
        state = await self._send(ctx, attempt, challenge, fmt, identifier, "enrollment", f"link:{destination}")
        return EnrollmentStep(
            data={"verificationType": CHANNELS[fmt], "destination": mask(fmt, identifier)},
            state={**state, "format": fmt.value, "identifier": identifier},
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        challenge = attempt.require_challenge()
        await _check_code(ctx, challenge, attempt.params)
        identifier = challenge.state.get("identifier")
        fmt = challenge.state.get("format")
        if not isinstance(identifier, str) or fmt not in ENROLLMENT_FIELDS.values():
            raise EnrollmentFailed("this enrolment was not started by otp: start again")
        credential_format = CredentialFormat(fmt)
        return NewCredential(
            format=credential_format,
            alias=mask(credential_format, identifier),
            identifier=identifier,
        )


def _enrollment_target(params: dict[str, Any]) -> tuple[CredentialFormat, str]:
    given = [key for key in ENROLLMENT_FIELDS if params.get(key) is not None]
    unknown = sorted(set(params) - set(ENROLLMENT_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown enrolment parameter(s) for otp: {', '.join(unknown)}; send email or phoneNumber",
            [{"path": f"params.{key}", "message": "unknown field"} for key in unknown],
        )
    if len(given) != 1:
        message = "send exactly one of email or phoneNumber to link"
        raise ValidationError(message, [{"path": "params", "message": message}])
    key = given[0]
    fmt = ENROLLMENT_FIELDS[key]
    return fmt, normalize_identifier(fmt, params[key], f"params.{key}")


def make_verifier(settings: OtpSettings | None = None) -> OtpVerifier:
    return OtpVerifier(settings)
