"""The client half: a code from the options, the saved sheet, or the person."""

from __future__ import annotations

import pytest
from stepup_recovery.client import RecoveryClientMethod, RecoveryCodeSheet

from stepup_core.client.method import Answer, ClientContext, ClientMethod


def test_it_is_a_client_method_named_like_the_verifier():
    method = RecoveryClientMethod()
    assert isinstance(method, ClientMethod)
    assert (method.name, method.package) == ("recovery", "stepup-recovery")
    assert isinstance(method.unattended(), RecoveryCodeSheet)


async def test_answer_prefers_the_code_option_then_the_sheet_then_asks(prompter):
    method = RecoveryClientMethod()
    sheet = RecoveryCodeSheet()
    sheet.remember(["aaaaa-bbbbb"])
    with_option = ClientContext(prompter=prompter, options={"code": " ccccc-ddddd "}, actor=sheet)
    assert await method.answer({}, with_option) == Answer(response={"code": "ccccc-ddddd"})
    assert await method.answer({}, ClientContext(prompter=prompter, actor=sheet)) == Answer(
        response={"code": "aaaaa-bbbbb"}
    )
    with pytest.raises(LookupError):
        await method.answer({}, ClientContext(prompter=prompter, actor=sheet))
    prompter.codes.append("eeeee-fffff")
    assert await method.answer({}, ClientContext(prompter=prompter)) == Answer(response={"code": "eeeee-fffff"})
    assert prompter.asked == [("One of your recovery codes (each works once)", ())]


async def test_enrolment_shows_the_codes_once_to_a_person(prompter):
    method = RecoveryClientMethod()
    assert await method.enrollment_params(ClientContext(prompter=prompter)) == {}
    wire = {"enrollmentId": "enr_1", "data": {"codes": ["aaaaa-bbbbb", "ccccc-ddddd"]}}
    assert await method.answer_enrollment(wire, ClientContext(prompter=prompter)) == {}
    assert "aaaaa-bbbbb\nccccc-ddddd" in prompter.told[0]
    assert "not shown again" in prompter.told[0]
