"""The client half: a code from the options, the authenticator app, or the person."""

from __future__ import annotations

import pytest
from stepup_totp.client import AuthenticatorApp, TotpClientMethod
from stepup_totp.otp import build_otpauth_uri, code_at, generate_secret

from stepup_core.client.method import Answer, ClientContext, ClientMethod
from stepup_core.models import EnrollmentCompletion, EnrollmentRequest, Principal, VerifyRequest

ALICE = Principal("alice", "s1")


def test_it_is_a_client_method_named_like_the_verifier():
    method = TotpClientMethod()
    assert isinstance(method, ClientMethod)
    assert (method.name, method.package) == ("totp", "stepup-totp")
    assert isinstance(method.unattended(), AuthenticatorApp)


async def test_answer_uses_the_code_option_first(prompter, app):
    ctx = ClientContext(prompter=prompter, options={"code": " 123456 "}, actor=app)
    assert await TotpClientMethod().answer({"method": "totp"}, ctx) == Answer(response={"code": "123456"})
    assert prompter.asked == []


async def test_answer_asks_the_person_and_names_the_device(prompter):
    prompter.codes.append("654321")
    challenge = {"method": "totp", "data": {"label": "Example Wallet:alice"}}
    answer = await TotpClientMethod().answer(challenge, ClientContext(prompter=prompter))
    assert answer.response == {"code": "654321"}
    assert prompter.asked == [("Code from your authenticator app for Example Wallet:alice", ())]


async def test_enrollment_params_come_from_the_options(prompter):
    ctx = ClientContext(
        prompter=prompter, options={"alias": "Phone", "account_name": "alice@example.com", "digits": 8, "code": "1"}
    )
    assert await TotpClientMethod().enrollment_params(ctx) == {
        "alias": "Phone",
        "accountName": "alice@example.com",
        "digits": 8,
    }


async def test_answer_enrollment_shows_the_qr_code_and_asks_for_a_code(service, prompter, clock):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    prompter.codes.append(code_at(start.data["secret"], clock.now()))
    wire = {"enrollmentId": start.enrollment_id, "method": "totp", "data": start.data}
    response = await TotpClientMethod().answer_enrollment(wire, ClientContext(prompter=prompter))
    assert start.data["qrText"] in prompter.told[0] and start.data["secret"] in prompter.told[0]
    view = await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response=dict(response)))
    assert view.method == "totp"


async def test_the_unattended_app_enrols_and_answers(service, clock, prompter):
    app = TotpClientMethod().unattended()
    app.clock = clock
    method = TotpClientMethod()
    ctx = ClientContext(prompter=prompter, actor=app)
    params = dict(await method.enrollment_params(ctx))
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp", params=params))
    wire = {"enrollmentId": start.enrollment_id, "method": "totp", "data": start.data}
    view = await service.complete_enrollment(
        ALICE, start.enrollment_id, EnrollmentCompletion(response=dict(await method.answer_enrollment(wire, ctx)))
    )
    clock.advance(30)
    synthetic = {"challengeId": None, "method": "totp", "credentialId": view.id, "data": {}}
    answer = await method.answer(synthetic, ctx)
    issued = await service.verify(
        ALICE, VerifyRequest(method="totp", response=dict(answer.response or {}), requested_scopes=("wallet:export",))
    )
    assert issued.method == "totp"
    assert prompter.asked == [] and prompter.told == []


def test_the_app_picks_the_entry_a_challenge_asks_for(clock):
    app = AuthenticatorApp(clock=clock)
    first = app.add(build_otpauth_uri(generate_secret(), account="alice", issuer="A"), enrollment_id="enr_1")
    second = app.add(build_otpauth_uri(generate_secret(), account="alice", issuer="B"), enrollment_id="enr_2")
    app.link("cred_1", "enr_1")
    assert app.entry_for({"credentialId": "cred_1"}) is first
    assert app.entry_for({"data": {"credentialId": "cred_1"}}) is first
    assert app.entry_for({"data": {"label": "B:alice"}}) is second
    assert app.entry_for({"data": {"label": "A:alice"}}) is first
    assert app.entry_for(None) is second  # the newest
    assert app.code({"credentialId": "cred_1"}) == first.key.code_at(clock.now())
    with pytest.raises(KeyError):
        app.link("cred_3", "enr_3")
    app.link("cred_2")  # the newest entry not linked yet
    assert app.entry_for({"credentialId": "cred_2"}) is second
    with pytest.raises(KeyError):
        app.link("cred_4")  # every entry is linked
