"""The core's verifier conformance suite, run against the wallet method."""

from __future__ import annotations

from typing import Any

import stepup_wallet.plugin
from stepup_wallet.client import LocalKeySigner

from stepup_core.models import ChallengeStart, EnrollmentCompletion, EnrollmentRequest, Principal
from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite


class TestWalletConformance(VerifierConformanceSuite):
    method = "wallet"

    def plugins(self) -> list[object]:
        return [stepup_wallet.plugin]

    def plugin_config(self) -> dict[str, Any]:
        return {"domain": "app.example.com", "uri": "https://app.example.com"}

    async def enroll(self, harness: Harness, principal: Principal) -> LocalKeySigner:
        signer = LocalKeySigner.generate()
        start = await harness.service.begin_enrollment(
            principal, EnrollmentRequest(method="wallet", params={"address": signer.address})
        )
        signature = await signer.sign_message(start.data["message"])
        await harness.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion({"signature": signature})
        )
        return signer

    async def valid_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        assert challenge is not None
        message = challenge.data["message"]
        return {"message": message, "signature": await handle.sign_message(message)}

    async def wrong_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        assert challenge is not None
        message = challenge.data["message"]
        return {"message": message, "signature": await LocalKeySigner.generate().sign_message(message)}

    def malformed_responses(self) -> list[dict[str, Any]]:
        return [
            {},
            {"message": None, "signature": None},
            {"message": 7, "signature": "0x" + "11" * 65},
            {"message": "x" * 100_000, "signature": "0x" + "11" * 65},
            {"signature": "0x" + "11" * 65},
            {"message": "hello", "signature": "0x" + "11" * 10_000},
            {"message": "hello", "signature": ["0x"]},
        ]
