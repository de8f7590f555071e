"""The core's verifier conformance suite, run against otp with codes read from a Mailbox."""

from __future__ import annotations

from typing import Any

import stepup_otp.plugin
from stepup_otp.client import Mailbox

from stepup_core.models import ChallengeStart, Credential, CredentialFormat, Factor, Principal
from stepup_core.testing.verifiers import SCOPE, Harness, VerifierConformanceSuite


class TestOtpConformance(VerifierConformanceSuite):
    method = "otp"

    def plugins(self) -> list[object]:
        self.mailbox = Mailbox()
        return [stepup_otp.plugin, self.mailbox]

    async def enroll(self, harness: Harness, principal: Principal) -> str:
        address = f"{principal.user_id.rpartition('-')[2]}@example.com"
        harness.app_credentials.setdefault(principal.user_id, []).append(
            Credential(
                id=f"email-{principal.user_id}",
                user_id=principal.user_id,
                method="",
                format=CredentialFormat.EMAIL,
                factor=Factor.REAUTH,
                created_at=harness.clock.now(),
                sign_in=True,
                identifier=address,
            )
        )
        return address

    async def begin(
        self, harness: Harness, principal: Principal, scopes: tuple[str, ...] = (SCOPE,)
    ) -> ChallengeStart | None:
        # One code per credential every 30 s: let the resend interval pass between challenges.
        harness.clock.advance(31)
        return await super().begin(harness, principal, scopes)

    async def valid_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        assert challenge is not None
        code = self.mailbox.code_for(challenge.data["destination"])
        assert code is not None
        return {"code": code}

    async def wrong_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        code = (await self.valid_response(harness, handle, challenge))["code"]
        return {"code": f"{(int(code) + 1) % 1_000_000:06d}"}

    def malformed_responses(self) -> list[dict[str, Any]]:
        fullwidth_digits = "\uff11\uff12\uff13\uff14\uff15\uff16"
        return [
            {},
            {"code": 123456},
            {"code": "12345"},
            {"code": fullwidth_digits},
            {"code": "9" * 10_000},
            {"code": None},
            {"code": ["123456"]},
        ]
