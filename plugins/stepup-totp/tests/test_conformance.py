"""The core's verifier conformance suite, run against the totp method."""

from __future__ import annotations

from typing import Any

import attrs
import stepup_totp.plugin
from stepup_totp.otp import code_at, code_for_step, time_step

from stepup_core.models import ChallengeStart, EnrollmentCompletion, EnrollmentRequest, Principal
from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite


@attrs.frozen
class Device:
    secret: str


class TestTotpConformance(VerifierConformanceSuite):
    method = "totp"

    def plugins(self) -> list[object]:
        return [stepup_totp.plugin]

    async def enroll(self, harness: Harness, principal: Principal) -> Device:
        service = harness.service
        start = await service.begin_enrollment(principal, EnrollmentRequest(method="totp"))
        secret = start.data["secret"]
        confirm = EnrollmentCompletion(response={"code": code_at(secret, harness.clock.now())})
        await service.complete_enrollment(principal, start.enrollment_id, confirm)
        harness.clock.advance(30)  # the enrolment used this step's code: wait for the next one
        return Device(secret)

    async def valid_response(
        self, harness: Harness, handle: Device, challenge: ChallengeStart | None
    ) -> dict[str, Any]:
        return {"code": code_at(handle.secret, harness.clock.now())}

    async def wrong_response(
        self, harness: Harness, handle: Device, challenge: ChallengeStart | None
    ) -> dict[str, Any]:
        step = time_step(harness.clock.now())
        window = {code_for_step(handle.secret, s) for s in range(step - 2, step + 3)}
        return {"code": next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)}

    def malformed_responses(self) -> list[dict[str, Any]]:
        return [
            {},
            {"code": None},
            {"code": 123456},
            {"code": ["123456"]},
            {"code": "12345"},
            {"code": "abcdef"},
            {"code": "1" * 10_000},
        ]
