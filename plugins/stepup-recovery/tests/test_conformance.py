"""The core's verifier conformance suite, run against the recovery method."""

from __future__ import annotations

from typing import Any

import attrs
import stepup_recovery.plugin

from stepup_core.models import ChallengeStart, EnrollmentRequest, Principal
from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite


@attrs.define
class Sheet:
    codes: list[str]


class TestRecoveryConformance(VerifierConformanceSuite):
    method = "recovery"

    def plugins(self) -> list[object]:
        return [stepup_recovery.plugin]

    async def enroll(self, harness: Harness, principal: Principal) -> Sheet:
        # Recovery codes are a fallback: the user needs another MFA credential first, and then a
        # credential:link grant (as if they had stepped up with it) to add the codes.
        await harness.add_companion_mfa(principal)
        link = await harness.service.tokens.mint(
            principal, ["credential:link"], method="conformance-companion", ttl=300, single_use=True
        )
        start = await harness.service.begin_enrollment(
            principal, EnrollmentRequest(method="recovery"), link.elevated_access_token
        )
        return Sheet(list(start.data["codes"]))

    async def valid_response(self, harness: Harness, handle: Sheet, challenge: ChallengeStart | None) -> dict[str, Any]:
        return {"code": handle.codes[0]}

    async def wrong_response(self, harness: Harness, handle: Sheet, challenge: ChallengeStart | None) -> dict[str, Any]:
        return {"code": next(c for c in ("aaaaa-aaaaa", "bbbbb-bbbbb") if c not in handle.codes)}

    def malformed_responses(self) -> list[dict[str, Any]]:
        return [
            {},
            {"code": None},
            {"code": 1234567890},
            {"code": ["abcde-fghjk"]},
            {"code": "abcde"},
            {"code": "abcde-fghju"},
            {"code": "a" * 10_000},
        ]
