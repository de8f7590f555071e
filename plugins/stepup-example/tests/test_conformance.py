"""The core's verifier conformance suite, run against the PIN method."""

from __future__ import annotations

from typing import Any

import stepup_example.plugin

from stepup_core.models import ChallengeStart, EnrollmentCompletion, EnrollmentRequest, Principal
from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite


class TestPinConformance(VerifierConformanceSuite):
    method = "pin"

    def plugins(self) -> list[object]:
        return [stepup_example.plugin]

    async def enroll(self, harness: Harness, principal: Principal) -> str:
        pin = "135790" if principal.user_id.endswith("alice") else "864201"
        start = await harness.service.begin_enrollment(principal, EnrollmentRequest(method="pin", params={"pin": pin}))
        await harness.service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion({"pin": pin}))
        return pin

    async def valid_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        return {"pin": handle}

    async def wrong_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        return {"pin": "000000"}

    def malformed_responses(self) -> list[dict[str, Any]]:
        fullwidth_digits = "\uff11\uff12\uff13\uff14\uff15\uff16"
        return [{}, {"pin": 135790}, {"pin": "12"}, {"pin": fullwidth_digits}, {"pin": "9" * 10_000}, {"pin": None}]
