"""The server half of ``passkey``: WebAuthn options out, browser responses in.

Step-up (``begin`` / ``verify``) issues PublicKeyCredentialRequestOptionsJSON listing the user's
passkeys with user verification required, then checks the AuthenticationResponseJSON with
:func:`~stepup_passkey.verification.verify_authentication`. Enrolment issues
PublicKeyCredentialCreationOptionsJSON and checks the RegistrationResponseJSON with
:func:`~stepup_passkey.verification.verify_registration`.

py_webauthn is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from stepup_core.errors import (
    InvalidResponse,
    NoEligibleCredential,
    ReplayDetected,
    ValidationError,
    VerificationFailed,
)
from stepup_core.models import Credential, CredentialFormat, Factor, Interaction
from stepup_core.store.base import make_key
from stepup_core.verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    Verification,
    VerifierContext,
    check_alias,
)

from .config import ALGORITHMS, PasskeySettings
from .verification import (
    AUTHENTICATION_FIELDS,
    SignCountRegression,
    b64url_decode,
    b64url_encode,
    check_credential_shape,
    verify_authentication,
    verify_registration,
)

METHOD = "passkey"
PACKAGE = "stepup-passkey"
#: The event emitted when a signature counter fails to increase (possible cloned authenticator).
SIGN_COUNT_EVENT = "passkey_sign_count_regression"
DEFAULT_ALIAS = "Passkey"
_COUNTER_RETRIES = 5
_ALGORITHM_NAMES = {v: k for k, v in ALGORITHMS.items()}


def counter_key(credential_id: str) -> str:
    """Store key of a credential's signature counter (its latest value, compare-and-set)."""
    return make_key("passkey-count", credential_id)


def user_handle_key(user_id: str) -> str:
    return make_key("passkey-user-handle", user_id)


def credential_owner_key(webauthn_credential_id: str) -> str:
    return make_key("passkey-credential-owner", webauthn_credential_id)


def _credential_param(params: Mapping[str, Any]) -> Mapping[str, Any]:
    credential = params.get("credential")
    if credential is None:
        raise InvalidResponse(
            "response.credential is missing: send the PublicKeyCredential JSON from the browser",
            field="response.credential",
        )
    if not isinstance(credential, Mapping):
        raise InvalidResponse("response.credential must be an object", field="response.credential")
    return credential


def _challenge_bytes(attempt: Attempt) -> bytes:
    challenge = attempt.challenge
    if challenge is None or not isinstance(challenge.state.get("challenge"), str):
        raise VerificationFailed("this passkey response belongs to no issued challenge; start a new one")
    return b64url_decode(challenge.state["challenge"])


class PasskeyVerifier(BaseVerifier):
    """The ``passkey`` method's server half (see the module documentation)."""

    #: The browser half, served at ``{prefix}/methods/passkey/browser.js`` (docs/browser.md).
    browser_module = files("stepup_passkey") / "browser.js"

    name = METHOD
    factor = Factor.MFA
    formats = (CredentialFormat.PASSKEY,)
    interaction = Interaction.OPTIONS
    label = "Passkey"

    def __init__(self, settings: PasskeySettings | None = None) -> None:
        self.settings = settings or PasskeySettings()
        self.challenge_ttl = self.settings.challenge_ttl

    # --- step-up --------------------------------------------------------------------

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        usable = [c for c in attempt.candidates if _is_registered(c)]
        if not usable:
            raise NoEligibleCredential("this user has no registered passkey; enrol one first", method=self.name)
        challenge = secrets.token_bytes(32)
        options = generate_authentication_options(
            rp_id=self.settings.rp_id,
            challenge=challenge,
            timeout=self.settings.timeout_ms,
            allow_credentials=[_descriptor(c) for c in usable],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return Begun(
            data={"publicKey": json.loads(options_to_json(options))}, state={"challenge": b64url_encode(challenge)}
        )

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        credential_json = _credential_param(attempt.params)
        raw_id = b64url_encode(check_credential_shape(credential_json, "response.credential", AUTHENTICATION_FIELDS))
        expected_challenge = _challenge_bytes(attempt)
        credential = next(
            (c for c in attempt.candidates if _is_registered(c) and c.data["credentialId"] == raw_id), None
        )
        if credential is None:
            raise VerificationFailed("this passkey is not registered to your account; use one of yours")

        key = counter_key(credential.id)
        current = await ctx.store.get(key)
        stored_count = int(current) if current is not None else int(credential.data.get("signCount", 0))
        try:
            proven = verify_authentication(
                credential_json,
                expected_challenge=expected_challenge,
                rp_id=self.settings.rp_id,
                origins=self.settings.effective_origins,
                public_key=b64url_decode(str(credential.data["publicKey"])),
                stored_sign_count=stored_count,
                require_user_verification=True,
                path="response.credential",
            )
        except SignCountRegression as exc:
            await ctx.emit(
                ctx.event(
                    SIGN_COUNT_EVENT,
                    "warning",
                    user_id=attempt.principal.user_id,
                    session_id=attempt.principal.session_id,
                    method=self.name,
                    credential_id=credential.id,
                    challenge_id=attempt.challenge.id if attempt.challenge else None,
                    reason="possible cloned authenticator",
                    details={"storedSignCount": exc.stored, "receivedSignCount": exc.received},
                )
            )
            raise

        if proven.new_sign_count != stored_count:
            await self._advance_counter(ctx, key, current, proven.new_sign_count)
        return Verification(
            credential_id=credential.id,
            details={
                "signCount": proven.new_sign_count,
                "userVerified": proven.user_verified,
                "backedUp": proven.backed_up,
            },
        )

    @staticmethod
    async def _advance_counter(ctx: VerifierContext, key: str, seen: str | None, new_count: int) -> None:
        """Move the stored counter from ``seen`` to ``new_count`` by compare-and-set.

        When another verification moved it first, look again: a lower value (another, older
        assertion) leaves ours valid and we retry; a value at or above ours means this very
        counter value was already accepted, so this is a second use of the same assertion.
        """
        for _ in range(_COUNTER_RETRIES):
            if await ctx.store.compare_and_set(key, seen, str(new_count)):
                return
            seen = await ctx.store.get(key)
            if seen is not None and int(seen) >= new_count:
                break
        raise ReplayDetected("this passkey response was already used; start a new challenge")

    # --- enrolment ------------------------------------------------------------------

    async def _user_handle(self, ctx: VerifierContext, user_id: str) -> bytes:
        key = user_handle_key(user_id)
        await ctx.store.add(key, b64url_encode(secrets.token_bytes(32)), ttl=None)
        stored = await ctx.store.get(key)
        if stored is None:
            raise VerificationFailed("could not keep the passkey user handle; try again")
        return b64url_decode(stored)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.cose import COSEAlgorithmIdentifier
        from webauthn.helpers.structs import (
            AttestationConveyancePreference,
            AuthenticatorSelectionCriteria,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        params = attempt.params
        unknown = sorted(set(params) - {"userName", "displayName"})
        if unknown:
            raise ValidationError(
                f"unknown passkey enrolment parameters {unknown}; allowed: userName, displayName",
                [{"path": f"params.{k}", "message": "unknown field"} for k in unknown],
            )
        user_name = check_alias(params.get("userName"), "params.userName") or attempt.principal.user_id
        display_name = check_alias(params.get("displayName"), "params.displayName") or user_name
        user_handle = await self._user_handle(ctx, attempt.principal.user_id)
        challenge = secrets.token_bytes(32)
        options = generate_registration_options(
            rp_id=self.settings.rp_id,
            rp_name=self.settings.rp_name,
            user_id=user_handle,
            user_name=user_name,
            user_display_name=display_name,
            challenge=challenge,
            timeout=self.settings.timeout_ms,
            attestation=AttestationConveyancePreference(self.settings.attestation),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement(self.settings.resident_key),
                require_resident_key=self.settings.resident_key == "required",
                user_verification=UserVerificationRequirement(self.settings.user_verification),
            ),
            exclude_credentials=[_descriptor(c) for c in attempt.candidates if _is_registered(c)],
            supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in self.settings.algorithm_ids],
        )
        return EnrollmentStep(
            data={"publicKey": json.loads(options_to_json(options))}, state={"challenge": b64url_encode(challenge)}
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        params = attempt.params
        credential_json = _credential_param(params)
        alias = check_alias(params.get("alias"), "response.alias")
        registered = verify_registration(
            credential_json,
            expected_challenge=_challenge_bytes(attempt),
            rp_id=self.settings.rp_id,
            origins=self.settings.effective_origins,
            require_user_verification=self.settings.require_user_verification_at_registration,
            allowed_algorithms=self.settings.algorithm_ids,
            attestation_time=ctx.clock.now(),
            path="response.credential",
        )
        if any(c.data.get("credentialId") == registered.credential_id for c in attempt.candidates):
            raise VerificationFailed("this passkey is already registered to your account")
        user_id = attempt.principal.user_id
        owner_key = credential_owner_key(registered.credential_id)
        if not await ctx.store.add(owner_key, user_id, ttl=None) and await ctx.store.get(owner_key) != user_id:
            # WebAuthn L2 §7.1 step 22: a credential id belongs to one account only.
            raise VerificationFailed("this passkey is registered to another account")

        attachment = credential_json.get("authenticatorAttachment")
        public = {
            "aaguid": registered.aaguid,
            "algorithm": _ALGORITHM_NAMES.get(registered.algorithm, str(registered.algorithm)),
            "transports": list(registered.transports),
            "backupEligible": registered.backup_eligible,
            "backedUp": registered.backed_up,
        }
        return NewCredential(
            format=CredentialFormat.PASSKEY,
            alias=alias or DEFAULT_ALIAS,
            type=attachment if attachment in ("platform", "cross-platform") else None,
            identifier=registered.credential_id,
            data={
                "credentialId": registered.credential_id,
                "publicKey": registered.public_key,
                "algorithm": registered.algorithm,
                "signCount": registered.sign_count,
                "transports": list(registered.transports),
                "aaguid": registered.aaguid,
                "attestationFormat": registered.attestation_format,
                "userVerified": registered.user_verified,
                "backupEligible": registered.backup_eligible,
                "backedUp": registered.backed_up,
                "rpId": self.settings.rp_id,
            },
            public=public,
        )


def _is_registered(credential: Credential) -> bool:
    """A passkey this plugin registered: it has the credential id and the public key."""
    data = credential.data
    return isinstance(data.get("credentialId"), str) and isinstance(data.get("publicKey"), str)


def _descriptor(credential: Credential) -> Any:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    transports = []
    for name in credential.data.get("transports", []):
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(
        id=b64url_decode(str(credential.data["credentialId"])), transports=transports or None
    )
