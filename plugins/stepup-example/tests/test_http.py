"""The PIN method over HTTP with the fixtures of stepup's opt-in pytest plugin: enrol, step up
through the client, and call a protected route."""

from __future__ import annotations

import pytest
import stepup_example.plugin

from stepup_core import errors
from stepup_core.client import ScriptedPrompter


@pytest.fixture
def stepup_plugins() -> list[object]:
    return [stepup_example.plugin]


async def test_enrol_and_step_up_over_http(stepup_stack):
    async with stepup_stack.client("alice", prompter=ScriptedPrompter(codes=["246810"])) as client:
        view = await client.enroll("pin", code="246810")
        assert view.method == "pin" and view.alias == "PIN"
        check = await client.check_step_up_auth("user:update")
        assert check.is_required and check.route.value == "mfa" and check.default_credential_id == view.id
        token = await client.prompt_step_up_auth("user:update")
        assert token is not None and token.method == "pin"
        assert not client.is_step_up_required("user:update")
        assert not (await client.check_step_up_auth("user:update")).is_required
    # every stepup answer the client received matched the OpenAPI document
    checked = {path for _, path, _ in stepup_stack.validator.seen}
    assert checked >= {"/stepup/check", "/stepup/verify", "/stepup/enrollments"}


async def test_a_wrong_pin_over_http_is_a_clear_error(stepup_stack):
    async with stepup_stack.client("bob") as client:
        await client.enroll("pin", code="135791")
        with pytest.raises(errors.StepUpError) as info:
            await client.prompt_step_up_auth("user:update", code="000000")
        assert info.value.code == "verification_failed"
        assert client.state.error is not None


async def test_the_service_fixture_needs_no_server(stepup_service, stepup_clock):
    assert [m.name for m in stepup_service.methods()] == ["pin"]
    assert stepup_service.clock is stepup_clock
