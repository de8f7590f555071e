"""PIN-specific behaviour beyond the conformance suite: enrolment rules and the client half."""

from __future__ import annotations

import pytest
import stepup_example.plugin
from stepup_example.client import PinClientMethod, RememberedPin

from stepup_core import errors
from stepup_core.client.method import ClientContext
from stepup_core.config import config_from_mapping
from stepup_core.models import EnrollmentCompletion, EnrollmentRequest, Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService

ME = Principal("me", "s")


@pytest.fixture
async def service(stepup_service_factory):
    config = {"secret_key": "ab" * 32, "plugins": {"pin": {"min_length": 4}}}
    return await stepup_service_factory(config, plugins=[("pin", stepup_example.plugin)])


async def test_enrolment_needs_the_same_pin_twice_and_stores_only_a_hash(service):
    start = await service.begin_enrollment(ME, EnrollmentRequest(method="pin", params={"pin": "4321"}))
    with pytest.raises(errors.VerificationFailed, match="differ"):
        await service.complete_enrollment(ME, start.enrollment_id, EnrollmentCompletion({"pin": "1234"}))
    view = await service.complete_enrollment(ME, start.enrollment_id, EnrollmentCompletion({"pin": "4321"}))
    assert view.format.value == "custom" and view.type == "pin"
    raw = await service.store.list_index("creds:me")
    assert "4321" not in "".join(raw.values())


async def test_enrolment_refuses_a_malformed_pin_naming_the_field(service):
    with pytest.raises(errors.InvalidResponse) as info:
        await service.begin_enrollment(ME, EnrollmentRequest(method="pin", params={"pin": "12ab"}))
    assert info.value.details["field"] == "params.pin"


async def test_settings_are_validated_by_name():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_example.plugin, name="pin")
    with pytest.raises(errors.ConfigError, match=r"plugins\.pin\.min_length"):
        await StepUpService.create(
            config_from_mapping({"store": "memory:", "plugins": {"pin": {"min_length": "four"}}}), pm=pm
        )


class NoPrompter:
    async def choose(self, title, options):  # pragma: no cover - never asked
        raise AssertionError

    async def ask_code(self, label: str) -> str:
        return "777777"

    async def tell(self, message: str) -> None:
        return None


async def test_client_half_prefers_explicit_code_then_actor_then_prompter():
    method = PinClientMethod()
    assert (await method.answer({}, ClientContext(NoPrompter(), options={"code": "1"}))).response == {"pin": "1"}
    actor = RememberedPin("999999")
    assert (await method.answer({}, ClientContext(NoPrompter(), actor=actor))).response == {"pin": "999999"}
    assert (await method.answer({}, ClientContext(NoPrompter()))).response == {"pin": "777777"}
