"""The server half of the ``totp`` method: authenticator apps (RFC 6238).

The core owns challenges, attempt budgets, lockout and minting; this verifier only proves that
a code belongs to a device, refuses a time step it has already accepted, and enrols devices.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.errors import ConfigError, EnrollmentFailed, ReplayDetected, ValidationError, VerificationFailed
from stepup_core.models import Credential, CredentialFormat, Factor
from stepup_core.store.base import make_key
from stepup_core.verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    Rekeyed,
    Verification,
    VerifierContext,
    check_alias,
    digit_code,
    read_code,
)

from .otp import (
    build_otpauth_uri,
    check_algorithm,
    check_digits,
    check_drift,
    check_parameters,
    check_period,
    generate_secret,
    verify_code,
)

METHOD = "totp"
PACKAGE = "stepup-totp"
#: The ``purpose`` under which device secrets are sealed (and the associated data of the seal).
SEAL_PURPOSE = "totp-secret"
DEFAULT_ALIAS = "Authenticator app"
_ENROLLMENT_PARAMS = ("alias", "accountName", "digits", "algorithm", "period")


@attrs.frozen
class TotpSettings:
    """``[plugins.totp]`` in ``stepup.toml``."""

    #: Shown by authenticator apps above the account; defaults to the configured ``app_name``.
    issuer: str | None = None
    #: Defaults for newly enrolled devices; a device keeps the values it was enrolled with.
    digits: int = 6
    algorithm: str = "SHA1"
    period: int = 30
    #: Time steps accepted either side of the current one (clock drift), 0 to 2.
    drift_steps: int = 1


def load_settings(config: StepUpConfig) -> TotpSettings:
    """Read and check ``[plugins.totp]``; a bad value is a ConfigError naming its key."""
    settings = config.plugin_section(METHOD, TotpSettings)
    settings = attrs.evolve(settings, algorithm=settings.algorithm.upper())
    try:
        check_parameters(settings.digits, settings.algorithm, settings.period)
    except ValueError as exc:
        raise ConfigError(f"plugins.totp.{exc}") from None
    try:
        check_drift(settings.drift_steps)
    except ValueError as exc:
        raise ConfigError(f"plugins.totp.drift_steps: {exc}") from None
    if settings.issuer is not None and (not settings.issuer.strip() or ":" in settings.issuer):
        raise ConfigError("plugins.totp.issuer must be non-empty and must not contain ':'")
    return settings


def read_app_code(params: dict[str, Any], digits: int) -> str:
    """The code from a response, separators removed (apps show ``123 456``); InvalidResponse
    when it is missing, not a string, or not exactly ``digits`` digits."""
    return read_code(params, f"the {digits}-digit code from the app", digit_code(digits))


@attrs.frozen
class DeviceParameters:
    digits: int
    algorithm: str
    period: int


def _device_parameters(credential: Credential) -> DeviceParameters:
    data = credential.data
    return DeviceParameters(
        digits=int(data.get("digits", 6)),
        algorithm=str(data.get("algorithm", "SHA1")),
        period=int(data.get("period", 30)),
    )


class TotpVerifier(BaseVerifier):
    """Verifies codes from authenticator apps and enrols new devices."""

    #: The browser half, served at ``{prefix}/methods/totp/browser.js`` (docs/browser.md).
    browser_module = files("stepup_totp") / "browser.js"

    name = METHOD
    factor = Factor.MFA
    formats = (CredentialFormat.TOTP,)
    requires_challenge = False
    label = "Authenticator app"
    prompt = "Code from your authenticator app"
    #: Enrolment needs time to open the app and scan the QR code.
    challenge_ttl = 600.0

    def __init__(self, settings: TotpSettings | None = None) -> None:
        self.settings = settings or TotpSettings()

    # --- step-up ---------------------------------------------------------------------------

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        """Nothing to send: tell the client which device and how many digits to ask for."""
        device = attempt.require_credential()
        params = _device_parameters(device)
        return Begun(
            data={
                "credentialId": device.id,
                "digits": params.digits,
                "period": params.period,
                "label": device.data.get("label"),
            }
        )

    async def rekey(self, ctx: VerifierContext, credential: Credential) -> Rekeyed:
        """Re-seal the device secret under the current secret key (``stepup keys rotate``)."""
        resealed = ctx.keys.reseal(SEAL_PURPOSE, str(credential.data["secret"]))
        return Rekeyed() if resealed is None else Rekeyed(data={**credential.data, "secret": resealed})

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        device = attempt.require_credential()
        params = _device_parameters(device)
        code = read_app_code(attempt.params, params.digits)
        secret = ctx.keys.unseal(SEAL_PURPOSE, str(device.data["secret"])).decode("ascii")
        step = verify_code(
            secret,
            code,
            ctx.clock.now(),
            digits=params.digits,
            algorithm=params.algorithm,
            period=params.period,
            drift=self.settings.drift_steps,
        )
        if step is None:
            raise VerificationFailed("the code does not match this authenticator app; check the device's clock")
        await self._advance_last_step(ctx, device, step)
        return Verification(credential_id=device.id, details={"timeStep": step})

    async def _advance_last_step(self, ctx: VerifierContext, device: Credential, step: int) -> None:
        """Accept ``step`` only if it is later than every step this device had accepted (RFC 6238
        section 5.2: a code is used once, and none from before it afterwards), and make it the
        device's high-water mark.

        The mark lives in the store and moves by compare-and-set, so of concurrent submissions,
        on any number of server instances sharing the store, only later steps ever win. Before
        any step-up it is the step of the code that confirmed the enrolment."""
        key = last_step_key(device.id)
        enrolled = int(device.data.get("enrolledStep", -1))
        for _ in range(_MAX_MARK_RACES):
            current = await ctx.store.get(key)
            last = enrolled if current is None else int(current)
            if step <= last:
                raise ReplayDetected(_replay_message(step, last, enrolled))
            if await ctx.store.compare_and_set(key, current, str(step)):
                return
        # Every round lost to a submission that moved the mark: this one is as late as it gets.
        raise ReplayDetected("a newer code from this app was accepted at the same moment; wait for the app's next code")

    async def forget(self, ctx: VerifierContext, credential: Credential) -> None:
        """Remove the device's high-water mark once the device is gone."""
        await ctx.store.delete(last_step_key(credential.id))

    # --- enrolment -------------------------------------------------------------------------

    def _enrollment_parameters(self, params: dict[str, Any]) -> tuple[DeviceParameters, str | None, str | None]:
        errors: list[dict[str, str]] = []
        for key in sorted(params):
            if key not in _ENROLLMENT_PARAMS:
                errors.append({"path": f"params.{key}", "message": "unknown field"})
        texts: dict[str, str | None] = {"alias": None, "accountName": None}
        try:
            texts["alias"] = check_alias(params.get("alias"), "params.alias")
        except ValidationError as exc:
            errors.extend(exc.errors)
        account = params.get("accountName")
        if account is not None and (not isinstance(account, str) or not account.strip() or len(account) > 100):
            message = "expected a non-empty string of at most 100 characters"
            errors.append({"path": "params.accountName", "message": message})
        elif account is not None:
            texts["accountName"] = account
        texts = {key: value.strip() if value else None for key, value in texts.items()}
        digits = params.get("digits", self.settings.digits)
        algorithm = params.get("algorithm", self.settings.algorithm)
        period = params.get("period", self.settings.period)
        if isinstance(algorithm, str):
            algorithm = algorithm.upper()
        for key, check, value in (
            ("digits", check_digits, digits),
            ("algorithm", check_algorithm, algorithm),
            ("period", check_period, period),
        ):
            try:
                check(value)
            except ValueError as exc:
                errors.append({"path": f"params.{key}", "message": str(exc)})
        if errors:
            listing = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
            raise ValidationError(f"invalid authenticator-app enrolment: {listing}", errors)
        return DeviceParameters(digits, algorithm, period), texts["alias"], texts["accountName"]

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        import io

        import segno

        device, alias, account = self._enrollment_parameters(attempt.params)
        secret = generate_secret(device.algorithm)
        issuer = self.settings.issuer or ctx.app_name
        account = account or attempt.principal.user_id
        uri = build_otpauth_uri(
            secret,
            account=account,
            issuer=issuer,
            digits=device.digits,
            algorithm=device.algorithm,
            period=device.period,
        )
        state = {
            "secret": ctx.keys.seal(SEAL_PURPOSE, secret.encode("ascii")),
            "digits": device.digits,
            "algorithm": device.algorithm,
            "period": device.period,
            "alias": alias,
            "label": f"{issuer}:{account}",
        }
        qr = segno.make(uri, error="m")
        text = io.StringIO()
        qr.terminal(out=text, compact=True)
        return EnrollmentStep(
            state=state,
            data={
                "enrollmentId": attempt.require_challenge().id,
                "otpauthUri": uri,
                "qrSvg": qr.svg_data_uri(scale=4),
                "qrText": text.getvalue(),
                "secret": secret,
                "issuer": issuer,
                "accountName": account,
                "digits": device.digits,
                "algorithm": device.algorithm,
                "period": device.period,
            }
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        state = attempt.require_challenge().state
        if "secret" not in state:
            raise EnrollmentFailed("this enrolment holds no authenticator secret; start a new enrolment")
        digits, algorithm, period = int(state["digits"]), str(state["algorithm"]), int(state["period"])
        code = read_app_code(attempt.params, digits)
        secret = ctx.keys.unseal(SEAL_PURPOSE, str(state["secret"])).decode("ascii")
        step = verify_code(
            secret,
            code,
            ctx.clock.now(),
            digits=digits,
            algorithm=algorithm,
            period=period,
            drift=self.settings.drift_steps,
        )
        if step is None:
            raise VerificationFailed(
                "the code does not match the new authenticator entry; check that the app added it "
                "and that the device's clock is right, then send the current code"
            )
        public = {"digits": digits, "algorithm": algorithm, "period": period, "label": state["label"]}
        return NewCredential(
            format=CredentialFormat.TOTP,
            alias=state.get("alias") or DEFAULT_ALIAS,
            type="authenticatorApp",
            data={
                "secret": state["secret"],
                "digits": digits,
                "algorithm": algorithm,
                "period": period,
                "label": state["label"],
                # The code that confirmed the enrolment never verifies a step-up.
                "enrolledStep": step,
            },
            public=public,
        )


def last_step_key(device_id: str) -> str:
    """The store key of a device's high-water mark: the last time step it accepted."""
    return make_key("totp-last-step", device_id)


#: Rounds of compare-and-set a submission may lose to others before it is refused.
_MAX_MARK_RACES = 8


def _replay_message(step: int, last: int, enrolled: int) -> str:
    """Say what happened to a code at or before the device's last accepted step."""
    wait = "wait for the app's next code"
    if last == enrolled:
        if step == enrolled:
            return f"this code confirmed the device's enrolment and cannot also step up; {wait}"
        return (
            "this code is older than the one that confirmed the device's enrolment (codes are "
            f"accepted only in the order the app shows them); {wait}"
        )
    if step == last:
        return f"this code was already used; {wait}"
    return f"this code is older than the last code accepted from this app; {wait}"


def make_verifier(config: StepUpConfig) -> TotpVerifier:
    return TotpVerifier(load_settings(config))
