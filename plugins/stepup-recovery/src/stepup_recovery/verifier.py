"""The server half of the ``recovery`` method: single-use recovery codes.

Each code is kept as its own store record, named by the keyed hash of the code under the
credential's code set, so using a code is the store's atomic ``take``: of any number of
concurrent submissions of one code exactly one finds it. The codes themselves are never stored.
"""

from __future__ import annotations

import secrets
from importlib.resources import files

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.crypto import LEGACY_KEY_ID, constant_time_equals
from stepup_core.errors import ConfigError, ValidationError, VerificationFailed
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
    read_code,
)

from .codes import BITS_PER_CODE, CODE_LENGTH, generate_codes, normalize_code

METHOD = "recovery"
PACKAGE = "stepup-recovery"
#: Purpose of the keyed hash a code is stored under.
HASH_PURPOSE = "recovery"
DEFAULT_ALIAS = "Recovery codes"
MAX_COUNT = 100
LOW_CODES_EVENT = "recovery_codes_low"
NOT_REKEYABLE = (
    "recovery codes: a code's keyed hash cannot be recomputed without the code; "
    "re-keyed when the user generates new codes"
)


@attrs.frozen
class RecoverySettings:
    """``[plugins.recovery]`` in ``stepup.toml``."""

    #: Codes in a set.
    count: int = 10
    #: A ``recovery_codes_low`` warning event is emitted after a use leaves fewer than this many.
    warn_below: int = 3


def load_settings(config: StepUpConfig) -> RecoverySettings:
    """Read and check ``[plugins.recovery]``; a bad value is a ConfigError naming its key."""
    settings = config.plugin_section(METHOD, RecoverySettings)
    if not 1 <= settings.count <= MAX_COUNT:
        raise ConfigError(f"plugins.recovery.count must be from 1 to {MAX_COUNT}, got {settings.count}")
    if not 0 <= settings.warn_below <= settings.count:
        raise ConfigError(
            f"plugins.recovery.warn_below must be from 0 to count ({settings.count}), got {settings.warn_below}"
        )
    return settings


def code_key(code_set: str, digest: str) -> str:
    """The store record of one unused code."""
    return make_key("recovery-code", code_set, digest)


def code_set_index(code_set: str) -> str:
    """The listing of a set's unused codes."""
    return make_key("recovery-codes", code_set)


def _digests(ctx: VerifierContext, credential: Credential, code: str) -> list[str]:
    """The names a code of this set may be stored under: its keyed hash under the key the set
    was made with, or (a set from before key ids) the bare hash under every configured key."""
    kid = credential.data.get("keyId")
    if kid:
        return [ctx.keys.keyed_hash(HASH_PURPOSE, code, key_id=str(kid))]
    return ctx.keys.legacy_keyed_hashes(HASH_PURPOSE, code)


#: What a recovery code looks like, for the person.
CODE_HINT = f"one of your recovery codes: {CODE_LENGTH} letters and digits such as 'abcde-fghjk'"


class RecoveryVerifier(BaseVerifier):
    """Verifies and consumes recovery codes; issues a fresh set on enrolment."""

    #: The browser half, served at ``{prefix}/methods/recovery/browser.js`` (docs/browser.md).
    browser_module = files("stepup_recovery") / "browser.js"

    name = METHOD
    factor = Factor.MFA
    formats = (CredentialFormat.RECOVERY_CODE,)
    #: A fallback: it counts only beside another MFA credential (the core enforces this).
    fallback = True
    requires_challenge = False
    label = "Recovery code"
    prompt = "Recovery code"

    def __init__(self, settings: RecoverySettings | None = None) -> None:
        self.settings = settings or RecoverySettings()

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        """Nothing to send: say how many codes remain."""
        credential = attempt.require_credential()
        remaining = len(await ctx.store.list_index(code_set_index(str(credential.data["set"]))))
        return Begun(data={"credentialId": credential.id, "remaining": remaining})

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        credential = attempt.require_credential()
        code = read_code(attempt.params, CODE_HINT, normalize_code)
        code_set = str(credential.data["set"])
        # The record is found by a keyed hash of the code, so the lookup's timing says nothing
        # about how close a guess was; the value is compared in constant time as a binding check.
        found = None
        for digest in _digests(ctx, credential, code):
            found = await ctx.store.take(code_key(code_set, digest))
            if found is not None:
                break
        if found is None or not constant_time_equals(found, code_set):
            raise VerificationFailed("not a recovery code of this account, or it was already used")
        remaining = len(await ctx.store.list_index(code_set_index(code_set)))
        if remaining < self.settings.warn_below:
            await ctx.emit(
                ctx.event(
                    LOW_CODES_EVENT,
                    "warning",
                    user_id=credential.user_id,
                    session_id=attempt.principal.session_id,
                    method=METHOD,
                    credential_id=credential.id,
                    details={"remaining": remaining},
                )
            )
        # The listing shows how many codes remain; the core stores it with the use.
        public = {**credential.public, "remaining": remaining}
        return Verification(credential_id=credential.id, details={"remaining": remaining}, public=public)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        """Generate a fresh set, shown once; it replaces the user's earlier set at once."""
        if attempt.params:
            errors = [{"path": f"params.{key}", "message": "unknown field"} for key in sorted(attempt.params)]
            raise ValidationError("recovery codes take no enrolment parameters", errors)
        codes = generate_codes(self.settings.count)
        code_set = secrets.token_urlsafe(16)
        index = code_set_index(code_set)
        for code in codes:
            digest = ctx.keys.keyed_hash(HASH_PURPOSE, normalize_code(code) or code)
            await ctx.store.put(code_key(code_set, digest), code_set, indexes=(index,))
        # Earlier sets stop working with the credential that named them; the core then calls
        # ``forget`` for each replaced credential, which drops their code records.
        count = len(codes)
        return EnrollmentStep(
            data={"codes": codes, "count": count, "bitsPerCode": BITS_PER_CODE},
            credential=NewCredential(
                format=CredentialFormat.RECOVERY_CODE,
                alias=DEFAULT_ALIAS,
                type="recoveryCodes",
                data={"set": code_set, "keyId": ctx.keys.current_id},
                public={"remaining": count, "total": count},
                replaces_existing=True,
            ),
        )

    async def rekey(self, ctx: VerifierContext, credential: Credential) -> Rekeyed:
        """Codes cannot be re-keyed: a code's keyed hash needs the code, which is never kept. The
        set keeps verifying with the key it was made with until the user generates new codes."""
        kid = str(credential.data.get("keyId") or LEGACY_KEY_ID)
        if kid == ctx.keys.current_id:
            return Rekeyed()
        return Rekeyed(still_uses={kid: NOT_REKEYABLE})

    async def forget(self, ctx: VerifierContext, credential: Credential) -> None:
        """The core deleted this set (unlinked or regenerated): drop its code records."""
        code_set = credential.data.get("set")
        if code_set:
            for key in await ctx.store.list_index(code_set_index(str(code_set))):
                await ctx.store.delete(key)


def make_verifier(config: StepUpConfig) -> RecoveryVerifier:
    return RecoveryVerifier(load_settings(config))
