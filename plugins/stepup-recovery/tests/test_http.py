"""stepup-recovery over HTTP: the real server on loopback, StepUpClient with the recovery client half.

Every answer the client receives is checked against stepup's OpenAPI document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from stepup_recovery.client import RecoveryCodeSheet

from stepup_core import errors
from stepup_core.client import ScriptedPrompter
from stepup_core.models import IssuedToken
from stepup_core.service import StepUpService
from stepup_core.testing.stack import StepUpStack

COMPANION_CODE = "companion-ok"


@pytest.fixture
async def http_stack(service: StepUpService) -> AsyncIterator[StepUpStack]:
    async with StepUpStack.serve(service, users=["alice"]) as stack:
        yield stack


async def test_codes_alone_cannot_step_up(http_stack: StepUpStack) -> None:
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        view = await client.enroll("recovery")
        assert view.details == {"remaining": 10, "total": 10}
        assert sheet.remaining == 10
        with pytest.raises(errors.MethodNotAllowed):
            await client.verify_recovery_code(sheet.codes[0], requested_scopes=["wallet:export"])


async def test_generate_use_and_count_over_http(http_stack: StepUpStack, flows: Any) -> None:
    await flows.add_companion(http_stack.principal("alice"))
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        await client.step_up("companion", requested_scopes=["credential:link"], code=COMPANION_CODE)
        view = await client.enroll("recovery")
        assert view.method == "recovery" and view.details == {"remaining": 10, "total": 10}
        # Unattended: the sheet hands out an unused code.
        token = await client.step_up("recovery", requested_scopes=["wallet:export"])
        assert token.method == "recovery"
        used = sheet.used[-1]
        with pytest.raises(errors.VerificationFailed):
            await client.verify_recovery_code(used, requested_scopes=["wallet:export"])
        # Typed by hand, in capitals with spaces.
        typed = sheet.next_code().upper().replace("-", " ")
        assert (await client.verify_recovery_code(typed, requested_scopes=["wallet:export"])).method == "recovery"
        listing = {c.method: c for c in await client.list_credentials()}
        assert listing["recovery"].details == {"remaining": 8, "total": 10}
        # Simultaneous submissions of one code over HTTP: one grant.
        code = sheet.next_code()
        results = await asyncio.gather(
            *(client.verify_recovery_code(code, requested_scopes=["wallet:export"]) for _ in range(10)),
            return_exceptions=True,
        )
        assert len([r for r in results if isinstance(r, IssuedToken)]) == 1
        assert all(isinstance(r, errors.StepUpError) for r in results if not isinstance(r, IssuedToken))
    assert ("GET", "/stepup/credentials", 200) in http_stack.validator.seen
