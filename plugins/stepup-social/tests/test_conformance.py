"""The core's verifier conformance suite, run against social with a strict provider on loopback.

The provider stamps its tokens with the harness's clock, so the suite's clock moves both sides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import stepup_social.plugin
from stepup_social.testing import LoopbackProvider, follow_authorization

from stepup_core.models import ChallengeStart, EnrollmentRequest, Principal
from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite


class TestSocialConformance(VerifierConformanceSuite):
    method = "social"

    @pytest.fixture(autouse=True)
    async def provider(self) -> AsyncIterator[LoopbackProvider]:
        # autouse: started before the suite's harness reads plugin_config()
        self.loopback = await LoopbackProvider().start()
        yield self.loopback
        await self.loopback.close()

    def plugins(self) -> list[object]:
        return [stepup_social.plugin]

    def plugin_config(self) -> dict[str, Any]:
        return {"providers": {"idp": self.loopback.provider_config()}}

    async def _sign_in(self, harness: Harness, url: str, subject: str) -> dict[str, str]:
        self.loopback.clock = harness.clock.now
        self.loopback.subject = subject
        return await follow_authorization(url)

    async def enroll(self, harness: Harness, principal: Principal) -> str:
        subject = f"idp-{principal.user_id}"
        start = await harness.service.begin_enrollment(principal, EnrollmentRequest("social", {"provider": "idp"}))
        await harness.service.complete_callback(
            "social", await self._sign_in(harness, start.data["authorizationUrl"], subject)
        )
        return subject

    async def valid_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        assert challenge is not None
        return await self._sign_in(harness, challenge.data["authorizationUrl"], handle)

    async def wrong_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        assert challenge is not None
        return await self._sign_in(harness, challenge.data["authorizationUrl"], "idp-someone-else")

    def malformed_responses(self) -> list[dict[str, Any]]:
        return [{}, {"code": "abc"}, {"state": "", "code": "abc"}, {"state": "x" * 10_000, "code": "abc"}]
