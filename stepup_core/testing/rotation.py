"""The secret-key rotation suite: live TOTP devices, passkeys and recovery codes keep verifying
while the secret key rotates, on any store that can scan (SQLite, Redis, PostgreSQL).

A store subclasses :class:`KeyRotationSuite` and provides ``rotation_store_url``: a URL of a
fresh, empty namespace that stays valid for the whole test (several services open it one after
another, as a rolling deploy would). The suite uses the real ``totp``, ``passkey`` and
``recovery`` plugins and the passkey plugin's software authenticator; it skips when they are
not installed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from ..clock import ManualClock
from ..config import config_from_mapping
from ..crypto import SecretKeyMissing, SecretKeys, key_id
from ..keyring import rotate_keys
from ..models import ChallengeRequest, EnrollmentCompletion, EnrollmentRequest, Principal, VerifyRequest
from ..plugins import get_plugin_manager
from ..service import StepUpService

__all__ = ["KeyRotationSuite"]

ALICE = Principal("alice", "alice-session")
RP_ID = "stepup.test"
ORIGIN = "https://app.stepup.test"


def _new_key() -> str:
    return secrets.token_hex(32)


def _kid(key: str) -> str:
    return key_id(bytes.fromhex(key))


@attrs.define
class _World:
    """One user's live factors, across services that come and go on one store."""

    store_url: str
    clock: ManualClock
    authenticator: Any
    totp: Any = None
    codes: list[str] = attrs.field(factory=list)

    async def service(self, *keys: str) -> StepUpService:
        import stepup_passkey.plugin
        import stepup_recovery.plugin
        import stepup_totp.plugin

        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(stepup_totp.plugin, name="totp")
        pm.register(stepup_passkey.plugin, name="passkey")
        pm.register(stepup_recovery.plugin, name="recovery")
        for name in ("redis", "postgres"):
            try:
                module = __import__(f"stepup_{name}.plugin", fromlist=["plugin"])
            except ImportError:
                continue
            pm.register(module, name=name)
        config = config_from_mapping(
            {
                "store": self.store_url,
                "secret_keys": list(keys),
                "plugins": {"passkey": {"rp_id": RP_ID, "rp_name": "Rotation", "origins": [ORIGIN]}},
            }
        )
        return await StepUpService.create(config, pm=pm, clock=self.clock)

    def next_totp_code(self) -> str:
        self.clock.advance(30)  # a fresh time step: a used code is never accepted twice
        return str(self.totp.at(self.clock.now()))

    async def totp_token(self, service: StepUpService, scope: str = "credential:link") -> str:
        issued = await service.verify(
            ALICE, VerifyRequest(method="totp", response={"code": self.next_totp_code()}, requested_scopes=(scope,))
        )
        return issued.elevated_access_token

    async def enrol_all(self, service: StepUpService) -> None:
        import pyotp

        start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
        self.totp = pyotp.TOTP(start.data["secret"])
        await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion({"code": self.totp.at(self.clock.now())})
        )
        link = await self.totp_token(service)
        begin = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"), token=link)
        created = self.authenticator.create(begin.data["publicKey"])
        link = await self.totp_token(service)
        await service.complete_enrollment(
            ALICE, begin.enrollment_id, EnrollmentCompletion({"credential": created}), token=link
        )
        await self.new_recovery_codes(service)

    async def new_recovery_codes(self, service: StepUpService) -> None:
        link = await self.totp_token(service)
        codes = await service.begin_enrollment(ALICE, EnrollmentRequest(method="recovery"), token=link)
        self.codes = list(codes.data["codes"])

    async def verify_all(self, service: StepUpService) -> dict[str, bool]:
        """Step up once with each factor; which ones granted."""
        granted = {}
        granted["totp"] = bool(await self.totp_token(service, "user:update"))
        start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
        answer = self.authenticator.get(start.data["publicKey"])
        issued = await service.verify(
            ALICE,
            VerifyRequest(
                method="passkey",
                challenge_id=start.challenge_id,
                response={"credential": answer},
                requested_scopes=("wallet:export",),
            ),
        )
        granted["passkey"] = issued.single_use
        code = self.codes.pop()
        issued = await service.verify(
            ALICE, VerifyRequest(method="recovery", response={"code": code}, requested_scopes=("user:update",))
        )
        granted["recovery"] = bool(issued.elevated_access_token)
        return granted

    async def stored_totp_secret(self, service: StepUpService) -> str:
        credentials = await service.credentials.list_for_user(ALICE.user_id)
        return str(next(c for c in credentials if c.method == "totp").data["secret"])


@pytest.mark.asyncio
class KeyRotationSuite:
    """Rotation with live factors. Subclasses provide the ``rotation_store_url`` fixture."""

    @pytest.fixture(autouse=True)
    def _methods_installed(self) -> None:
        for module in ("stepup_totp", "stepup_passkey", "stepup_recovery", "pyotp"):
            pytest.importorskip(module, reason="the rotation suite uses stepup-totp, stepup-passkey, stepup-recovery")

    @pytest.fixture
    async def world(self, rotation_store_url: str) -> AsyncIterator[_World]:
        from stepup_passkey.testing import SoftwareAuthenticator

        yield _World(rotation_store_url, ManualClock(current=time.time()), SoftwareAuthenticator(origin=ORIGIN))

    async def test_every_factor_still_verifies_through_a_rotation(self, world: _World) -> None:
        old, new = _new_key(), _new_key()
        service = await world.service(old)
        await world.enrol_all(service)
        assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        assert (await world.stored_totp_secret(service)).startswith(f"aesgcm:{_kid(old)}:")
        await service.close()

        # Deploy [new, old]: reads use the key each value names; new values use the new key.
        service = await world.service(new, old)
        assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        report = await rotate_keys(service, operator="ops")
        assert report.credentials == 3
        assert dict(report.resealed) == {"totp": 1}
        assert report.unchanged == 1  # the passkey: a public key, nothing sealed
        assert set(report.still_used) == {_kid(old)}  # the recovery codes' keyed hashes
        assert report.removable == []
        assert (await world.stored_totp_secret(service)).startswith(f"aesgcm:{_kid(new)}:")
        assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        lines = "\n".join(report.lines())
        assert f"cannot be re-keyed, still need key {_kid(old)}: 1 (recovery codes" in lines
        await service.close()

        # The old key still protects the recovery codes: dropping it now is refused.
        with pytest.raises(SecretKeyMissing, match=f"secret key {_kid(old)} is not configured") as refused:
            await world.service(new)
        assert "recovery codes" in str(refused.value)
        assert "stepup keys rotate" in str(refused.value)

        # New codes are made under the new key; the next rotation frees the old key.
        service = await world.service(new, old)
        await world.new_recovery_codes(service)
        report = await rotate_keys(service, operator="ops")
        assert report.removable == [_kid(old)]
        assert dict(report.resealed) == {}
        await service.close()

        service = await world.service(new)
        try:
            assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        finally:
            await service.close()

    async def test_removing_the_old_key_before_rotating_is_refused(self, world: _World) -> None:
        old, new = _new_key(), _new_key()
        service = await world.service(old)
        await world.enrol_all(service)
        await service.close()
        with pytest.raises(SecretKeyMissing, match="run `stepup keys rotate`"):
            await world.service(new)
        # Nothing was lost: with the old key back, every factor works.
        service = await world.service(new, old)
        try:
            assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        finally:
            await service.close()

    async def test_values_from_before_key_ids_are_read_and_rotated(self, world: _World) -> None:
        old, new = _new_key(), _new_key()
        service = await world.service(old)
        await world.enrol_all(service)
        # Rewrite the data as stepup wrote it before values carried key ids: a TOTP secret
        # sealed as "aesgcm:<body>", recovery codes stored under bare hex hashes, no ledger.
        kid = _kid(old)
        credentials = {c.method: c for c in await service.credentials.list_for_user(ALICE.user_id)}
        totp = credentials["totp"]
        totp.data = {**totp.data, "secret": str(totp.data["secret"]).replace(f"aesgcm:{kid}:", "aesgcm:")}
        await service.credentials.save(totp)
        recovery = credentials["recovery"]
        code_set = str(recovery.data["set"])
        from stepup_recovery.verifier import HASH_PURPOSE, code_key, code_set_index

        for key in await service.store.list_index(code_set_index(code_set)):
            await service.store.delete(key)
        keys = SecretKeys(bytes.fromhex(old))
        for code in world.codes:
            digest = keys.legacy_keyed_hashes(HASH_PURPOSE, code.replace("-", ""))[0]
            await service.store.put(code_key(code_set, digest), code_set, indexes=(code_set_index(code_set),))
        recovery.data = {k: v for k, v in recovery.data.items() if k != "keyId"}
        await service.credentials.save(recovery)
        await service.store.delete("meta:secret-keys")
        await service.close()

        service = await world.service(new, old)
        try:
            assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
            report = await rotate_keys(service, operator="ops")
            assert dict(report.resealed) == {"totp": 1}
            assert _kid(old) in report.ledger.in_use  # the legacy codes' key is still needed
            assert (await world.stored_totp_secret(service)).startswith(f"aesgcm:{_kid(new)}:")
            assert await world.verify_all(service) == {"totp": True, "passkey": True, "recovery": True}
        finally:
            await service.close()
