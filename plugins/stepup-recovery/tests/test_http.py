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


# --- removing the last MFA device ---------------------------------------------------------------


async def test_removing_the_last_mfa_device_removes_the_codes_and_says_so(
    http_stack: StepUpStack, flows: Any, plugins: Any
) -> None:
    """Recovery codes step up only beside another MFA credential. Once the last one is removed
    they would strand the user (refused at /verify, yet making enrolment need a credential:link
    token nothing can mint): they go with it, the answer names them and the audit says why."""
    alice = http_stack.principal("alice")
    companion = await flows.add_companion(alice)
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        await client.step_up("companion", requested_scopes=["credential:link"], code=COMPANION_CODE)
        codes = await client.enroll("recovery")
        unlink = await client.step_up("companion", requested_scopes=["credential:unlink"], code=COMPANION_CODE)
        status, answer = await http_stack.api("alice", "DELETE", f"/credentials/{companion.id}",
                                              token=unlink.elevated_access_token)
        assert status == 200, answer
        assert answer["credentialId"] == companion.id
        assert [(c["id"], c["method"]) for c in answer["alsoRemoved"]] == [(codes.id, "recovery")]
        assert "recovery codes were removed" in answer["reason"]
        assert await client.list_credentials() == []
        deleted = plugins.of_type("credential_deleted")
        assert [(e.credential_id, e.reason) for e in deleted] == [
            (companion.id, None), (codes.id, "fallback_without_mfa")
        ]
        assert deleted[1].details == {"removedWith": companion.id}
        # The codes are gone, and nothing blocks setting up MFA again.
        with pytest.raises(errors.NoEligibleCredential):
            await client.verify_recovery_code(sheet.codes[1], requested_scopes=["wallet:export"])
        status, body = await http_stack.api("alice", "POST", "/enrollments",
                                            {"method": "companion", "params": {"pin": COMPANION_CODE}})
        assert status == 201, body


async def test_removing_one_of_two_mfa_devices_keeps_the_codes(http_stack: StepUpStack, flows: Any) -> None:
    alice = http_stack.principal("alice")
    await flows.add_companion(alice)
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        link = await client.step_up("companion", requested_scopes=["credential:link"], code=COMPANION_CODE)
        await client.enroll("recovery")
        status, second = await http_stack.api("alice", "POST", "/enrollments",
                                              {"method": "companion", "params": {"pin": COMPANION_CODE}},
                                              token=link.elevated_access_token)
        assert status == 201, second
        await client.step_up("companion", requested_scopes=["credential:unlink"], code=COMPANION_CODE)
        assert await client.delete_credential(second["credential"]["id"]) == []
        assert sorted(c.method for c in await client.list_credentials()) == ["companion", "recovery"]
        assert (await client.step_up("recovery", requested_scopes=["wallet:export"])).method == "recovery"


async def test_the_client_reports_what_went_with_a_credential(http_stack: StepUpStack, flows: Any) -> None:
    companion = await flows.add_companion(http_stack.principal("alice"))
    async with http_stack.client(actors={"recovery": RecoveryCodeSheet()}, prompter=ScriptedPrompter()) as client:
        await client.step_up("companion", requested_scopes=["credential:link"], code=COMPANION_CODE)
        codes = await client.enroll("recovery")
        await client.step_up("companion", requested_scopes=["credential:unlink"], code=COMPANION_CODE)
        removed = await client.delete_credential(companion.id)
    assert [c.id for c in removed] == [codes.id]


async def test_a_user_holding_only_recovery_codes_can_set_up_mfa_without_a_token(
    http_stack: StepUpStack, flows: Any
) -> None:
    """Codes generated before any MFA device cannot step up, so they cannot mint the
    credential:link token either: enrolling the device they wait for needs none."""
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        await client.enroll("recovery")
        status, body = await http_stack.api("alice", "POST", "/enrollments",
                                            {"method": "companion", "params": {"pin": COMPANION_CODE}})
        assert status == 201, body
        assert (await client.step_up("recovery", requested_scopes=["wallet:export"])).method == "recovery"
        # Now alice can step up: a further device needs the token again.
        status, body = await http_stack.api("alice", "POST", "/enrollments",
                                            {"method": "companion", "params": {"pin": "another-pin"}})
        assert status == 401 and body["code"] == "insufficient_user_authentication"
