"""stepup-otp through StepUpService: real SMTP and SMS delivery, and the security properties
(expiry, attempt budget, resend limits, failing delivery, single use, user and session binding)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from stepup_otp.client import Mailbox, OtpClientMethod
from stepup_otp.verifier import OtpVerifier

from stepup_core import errors
from stepup_core.client import ScriptedPrompter
from stepup_core.client.method import ClientContext
from stepup_core.models import (
    ChallengeRequest,
    ChallengeStart,
    CredentialFormat,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    Interaction,
    Principal,
    VerifyRequest,
)
from stepup_core.store.base import make_key

JANE = Principal("jane", "sess-1", sign_in_credential_id="app-email")
JANE_OTHER_SESSION = Principal("jane", "sess-2", sign_in_credential_id="app-email")
MALLORY = Principal("mallory", "sess-9")
SCOPE = "wallet:export"


def smtp_section(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "smtp": {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"},
        **extra,
    }


def code_from_sms(request: dict[str, Any]) -> str:
    match = re.search(r"\b(\d{6})\b", request["body"]["text"])
    assert match, request
    return match.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def begin(world: Any, principal: Principal = JANE, **kw: Any) -> ChallengeStart:
    start: ChallengeStart = await world.service.begin(
        principal, ChallengeRequest(method="otp", requested_scopes=(SCOPE,), **kw)
    )
    return start


async def verify(world: Any, challenge_id: str, code: Any, principal: Principal = JANE) -> Any:
    return await world.service.verify(
        principal, VerifyRequest(method="otp", challenge_id=challenge_id, response={"code": code})
    )


# --- the method as the service sees it -----------------------------------------------------


async def test_otp_is_a_reauth_code_method_whose_challenge_lives_as_long_as_the_code(otp_world_factory: Any) -> None:
    world = await otp_world_factory({"code_ttl": 240})
    [info] = world.service.methods()
    assert info.name == "otp"
    assert info.factor is Factor.REAUTH
    assert info.formats == (CredentialFormat.EMAIL, CredentialFormat.PHONE_NUMBER)
    assert info.interaction is Interaction.CODE
    assert info.requires_challenge is True
    verifier = world.service.verifiers["otp"]
    assert isinstance(verifier, OtpVerifier)
    assert verifier.challenge_ttl == 240
    assert [(limit.limit, limit.window) for limit in verifier.begin_limits] == [(1, 30.0), (10, 3600.0)]


# --- end to end over real transports --------------------------------------------------------


@pytest.mark.parametrize("security", ["none", "starttls"])
async def test_code_sent_by_smtp_verifies_and_grants_the_scope(
    otp_world_factory: Any, smtp_server_factory: Any, tls_material: Any, security: str
) -> None:
    server = smtp_server_factory(security)
    smtp = {"host": "localhost", "port": server.port, "security": security, "sender": "no-reply@acme.example"}
    if security == "starttls":
        smtp["tls_ca_file"] = str(tls_material.cert_file)
    world = await otp_world_factory({"smtp": smtp})
    world.app.give("jane", "app-email", "Jane.Doe@Example.com")

    check = await world.service.check(JANE, SCOPE)
    assert check.is_required
    assert check.default_credential_id == "app-email"

    start = await begin(world)
    assert start.method == "otp"
    assert start.credential_id == "app-email"
    assert start.data == {
        "verificationType": "email",
        "credentialId": "app-email",
        "destination": "J***@example.com",
        "resendAfter": 30.0,  # the default resend_interval: a prompt counts it down
    }
    assert start.expires_at == world.clock.now() + 600

    [mail] = server.messages
    assert mail.rcpt_tos == ["Jane.Doe@example.com"]
    assert server.handler.tls_sessions == [security == "starttls"]
    code = mail.code()  # read from both the text and the HTML body

    token = await verify(world, start.challenge_id, code)
    assert token.scopes == (SCOPE,)
    assert token.method == "otp"
    assert token.elevated_access_token.startswith("sut_")
    after = await world.service.check(JANE, SCOPE, token=token.elevated_access_token)
    assert after.is_required is False


async def test_code_sent_by_sms_gateway_verifies(otp_world_factory: Any, sms_gateway: Any) -> None:
    world = await otp_world_factory(
        {"sms_gateway": {"url": sms_gateway.url, "auth_header": {"name": "X-Api-Key", "value": "k-1"}}}
    )
    world.app.give("jane", "app-phone", "+1 (415) 555-4567", CredentialFormat.PHONE_NUMBER)
    start = await begin(world, Principal("jane", "sess-1", "app-phone"))
    assert start.data == {
        "verificationType": "sms", "credentialId": "app-phone", "destination": "+1******4567", "resendAfter": 30.0
    }

    [request] = sms_gateway.requests
    assert request["headers"]["X-Api-Key"] == "k-1"
    assert request["body"]["to"] == "+14155554567"
    token = await verify(world, start.challenge_id, code_from_sms(request), Principal("jane", "sess-1", "app-phone"))
    assert token.scopes == (SCOPE,)


async def test_the_code_is_stored_only_as_a_keyed_hash(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    code = mailbox.code_for("j***@example.com")
    assert code is not None and re.fullmatch(r"\d{6}", code)
    raw = await world.service.store.get(make_key("challenge", start.challenge_id))
    assert raw is not None
    assert code not in raw
    assert world.service.keys.keyed_hash("otp", start.challenge_id + code) in raw


async def test_codes_are_six_random_digits(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    for _ in range(8):
        await begin(world)
        world.clock.advance(31)
    codes = [d.code for d in mailbox.deliveries]
    assert all(re.fullmatch(r"\d{6}", c) for c in codes)
    assert len(set(codes)) > 1


# --- which credential gets the code --------------------------------------------------------


async def test_default_is_the_sign_in_email_not_a_linked_phone(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "linked-phone", "+14155554567", CredentialFormat.PHONE_NUMBER, sign_in=False)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world, Principal("jane", "sess-1"))
    assert start.data["credentialId"] == "app-email"
    assert start.data["verificationType"] == "email"
    assert [d.address for d in mailbox.deliveries] == ["jane@example.com"]


async def test_default_follows_the_credential_the_session_signed_in_with(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    start = await begin(world, Principal("jane", "sess-1", sign_in_credential_id="app-phone"))
    assert start.data == {
        "verificationType": "sms", "credentialId": "app-phone", "destination": "+1******4567", "resendAfter": 30.0
    }
    assert mailbox.deliveries[-1].channel == "sms"


async def test_a_named_credential_wins(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    start = await begin(world, credential_id="app-phone")
    assert start.data["verificationType"] == "sms"
    with pytest.raises(errors.CredentialNotFound):
        await begin(world, credential_id="someone-elses")


async def test_a_user_without_email_or_phone_gets_no_eligible_credential(otp_world_factory: Any) -> None:
    world = await otp_world_factory(mailbox=Mailbox())
    with pytest.raises(errors.NoEligibleCredential):
        await begin(world)


async def test_an_undeliverable_application_address_is_refused_before_sending(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "not-an-address")
    with pytest.raises(errors.NoEligibleCredential, match="deliverable email address"):
        await begin(world)
    assert mailbox.deliveries == []


# --- expiry, attempts, resends --------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "wait", "expired"), [(None, 599, False), (None, 600, True), (120, 119, False),
                                                      (120, 121, True)])
async def test_codes_expire_after_code_ttl(
    otp_world_factory: Any, ttl: int | None, wait: int, expired: bool
) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory({"code_ttl": ttl} if ttl else {}, mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    world.clock.advance(wait)
    code = mailbox.code_for()
    if expired:
        with pytest.raises(errors.ChallengeExpired):
            await verify(world, start.challenge_id, code)
    else:
        assert (await verify(world, start.challenge_id, code)).scopes == (SCOPE,)


async def test_five_wrong_codes_exhaust_the_challenge_even_for_the_right_code(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    code = mailbox.code_for()
    assert code is not None
    for remaining in (4, 3, 2, 1):
        with pytest.raises(errors.VerificationFailed) as caught:
            await verify(world, start.challenge_id, wrong(code))
        assert caught.value.details["attemptsRemaining"] == remaining
    with pytest.raises(errors.AttemptsExhausted):
        await verify(world, start.challenge_id, wrong(code))
    with pytest.raises(errors.AttemptsExhausted) as final:
        await verify(world, start.challenge_id, code)
    assert final.value.code == "attempts_exhausted"


async def test_malformed_codes_are_named_and_count_as_attempts(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    for bad in (123456, "12345", "abcdef", None):
        with pytest.raises(errors.InvalidResponse, match=r"response\.code"):
            await verify(world, start.challenge_id, bad)
    with pytest.raises(errors.AttemptsExhausted):
        await verify(world, start.challenge_id, "1234567")
    with pytest.raises(errors.AttemptsExhausted):
        await verify(world, start.challenge_id, mailbox.code_for())


async def test_a_code_typed_with_a_space_is_accepted(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    code = mailbox.code_for()
    assert code is not None
    assert (await verify(world, start.challenge_id, f" {code[:3]} {code[3:]} ")).scopes == (SCOPE,)


async def test_resend_is_limited_to_one_per_30_seconds(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    await begin(world)
    world.clock.advance(29)
    with pytest.raises(errors.RateLimited) as caught:
        await begin(world)
    assert caught.value.code == "rate_limited"
    assert caught.value.details["retryAfter"] == 30
    assert len(mailbox.deliveries) == 1
    world.clock.advance(2)
    await begin(world)
    assert len(mailbox.deliveries) == 2


async def test_resend_is_limited_to_ten_per_hour(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    for _ in range(10):
        await begin(world)
        world.clock.advance(31)
    with pytest.raises(errors.RateLimited) as caught:
        await begin(world)
    assert caught.value.details["retryAfter"] == 3600
    assert len(mailbox.deliveries) == 10


async def test_send_limits_are_configurable(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory({"resend_interval": 5, "max_sends_per_hour": 2}, mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    await begin(world)
    world.clock.advance(6)
    await begin(world)
    world.clock.advance(6)
    with pytest.raises(errors.RateLimited):
        await begin(world)


async def test_a_resend_retires_the_earlier_code(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    first = await begin(world)
    first_code = mailbox.code_for()
    world.clock.advance(31)
    second = await begin(world)
    second_code = mailbox.code_for()
    with pytest.raises(errors.VerificationFailed, match="newer code"):
        await verify(world, first.challenge_id, first_code)
    assert (await verify(world, second.challenge_id, second_code)).scopes == (SCOPE,)


# --- failing delivery -----------------------------------------------------------------------


def record_challenge_ids(world: Any) -> list[str]:
    """Remember the ids of the challenges the otp verifier is asked to begin."""
    verifier = world.service.verifiers["otp"]
    original = verifier.begin
    seen: list[str] = []

    async def recording_begin(ctx: Any, attempt: Any) -> Any:
        seen.append(attempt.challenge.id)
        return await original(ctx, attempt)

    verifier.begin = recording_begin
    return seen


async def test_smtp_server_down_fails_delivery_and_leaves_no_usable_challenge(
    otp_world_factory: Any, unused_port: int
) -> None:
    world = await otp_world_factory(
        {"smtp": {"host": "127.0.0.1", "port": unused_port, "security": "none", "sender": "no-reply@acme.example",
                  "timeout": 5}}
    )
    world.app.give("jane", "app-email", "jane@example.com")
    seen = record_challenge_ids(world)
    with pytest.raises(errors.DeliveryFailed) as caught:
        await begin(world)
    assert caught.value.status == 502
    assert "j***@example.com" in caught.value.message
    [challenge_id] = seen
    for code in ("000000", "123456"):
        with pytest.raises(errors.ChallengeNotFound):
            await verify(world, challenge_id, code)
    assert not any(e.type == "challenge_issued" for e in world.events)


async def test_sms_gateway_error_fails_delivery_and_even_the_real_code_is_refused(
    otp_world_factory: Any, sms_gateway: Any
) -> None:
    sms_gateway.status = 500
    world = await otp_world_factory({"sms_gateway": {"url": sms_gateway.url}})
    world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    seen = record_challenge_ids(world)
    with pytest.raises(errors.DeliveryFailed, match="HTTP 500"):
        await begin(world)
    # The gateway saw the code before failing; the challenge it belonged to is gone all the same.
    [request] = sms_gateway.requests
    [challenge_id] = seen
    with pytest.raises(errors.ChallengeNotFound):
        await verify(world, challenge_id, code_from_sms(request))


# --- single use and binding ------------------------------------------------------------------


async def test_a_verified_challenge_cannot_be_verified_again(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    code = mailbox.code_for()
    await verify(world, start.challenge_id, code)
    with pytest.raises(errors.ChallengeNotFound):
        await verify(world, start.challenge_id, code)


async def test_another_user_or_session_cannot_verify_the_challenge(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    world.app.give("mallory", "mallory-email", "mallory@example.com")
    start = await begin(world)
    code = mailbox.code_for("j***@example.com")
    with pytest.raises(errors.ChallengeNotFound):
        await verify(world, start.challenge_id, code, MALLORY)
    with pytest.raises(errors.ChallengeNotFound):
        await verify(world, start.challenge_id, code, JANE_OTHER_SESSION)
    # Their tries did not spend Jane's budget; Jane's token is bound to Jane's session.
    token = await verify(world, start.challenge_id, code)
    assert (await world.service.check(JANE, SCOPE, token=token.elevated_access_token)).is_required is False
    assert (await world.service.check(JANE_OTHER_SESSION, SCOPE, token=token.elevated_access_token)).is_required


async def test_a_code_for_one_challenge_does_not_verify_another(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    email_start = await begin(world, credential_id="app-email")
    email_code = mailbox.code_for("j***@example.com")
    phone_start = await begin(world, credential_id="app-phone")
    phone_code = mailbox.code_for("+1******4567")
    assert email_code is not None and phone_code is not None
    # Two random codes coincide once in a million runs; then this check would be meaningless.
    assert email_code != phone_code
    with pytest.raises(errors.VerificationFailed):
        await verify(world, phone_start.challenge_id, email_code)
    assert email_start.challenge_id != phone_start.challenge_id
    assert (await verify(world, phone_start.challenge_id, phone_code)).scopes == (SCOPE,)


# --- linking a new email or phone -----------------------------------------------------------


async def test_first_email_is_linked_by_the_code_sent_to_it(
    otp_world_factory: Any, smtp_server_factory: Any
) -> None:
    server = smtp_server_factory("none")
    world = await otp_world_factory(smtp_section(server))
    principal = Principal("newbie", "s-1")
    start = await world.service.begin_enrollment(
        principal, EnrollmentRequest(method="otp", params={"email": "New.User@Example.ORG"})
    )
    assert start.data == {"verificationType": "email", "destination": "N***@example.org"}
    assert start.credential is None
    [mail] = server.messages
    assert mail.rcpt_tos == ["New.User@example.org"]
    assert "confirm that this address belongs to you" in mail.text()

    with pytest.raises(errors.VerificationFailed):
        await world.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response={"code": wrong(mail.code())})
        )
    view = await world.service.complete_enrollment(
        principal, start.enrollment_id, EnrollmentCompletion(response={"code": mail.code()})
    )
    assert view.method == "otp"
    assert view.format is CredentialFormat.EMAIL
    assert view.factor is Factor.REAUTH
    assert view.alias == "N***@example.org"
    assert "New.User" not in repr(view)
    assert [c.id for c in await world.service.list_credentials(principal)] == [view.id]

    # The linked address now receives step-up codes.
    world.clock.advance(31)
    step = await begin(world, principal)
    assert step.data == {
        "verificationType": "email", "credentialId": view.id, "destination": "N***@example.org", "resendAfter": 30.0
    }
    token = await verify(world, step.challenge_id, server.messages[-1].code(), principal)
    assert token.scopes == (SCOPE,)

    with pytest.raises(errors.ChallengeNotFound):
        await world.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response={"code": mail.code()})
        )


async def test_linking_a_phone_needs_a_credential_link_token_and_the_sms_code(
    otp_world_factory: Any, sms_gateway: Any
) -> None:
    mailbox = Mailbox(addresses=frozenset({"jane@example.com"}))
    world = await otp_world_factory({"sms_gateway": {"url": sms_gateway.url}}, mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    request = EnrollmentRequest(method="otp", params={"phoneNumber": "+44 20 7946 0958"})
    with pytest.raises(errors.StepUpRequired):
        await world.service.begin_enrollment(JANE, request)
    assert sms_gateway.requests == []

    start = await world.service.begin(JANE, ChallengeRequest(method="otp", requested_scopes=("credential:link",)))
    token = await verify(world, start.challenge_id, mailbox.code_for())
    enrollment = await world.service.begin_enrollment(JANE, request, token=token.elevated_access_token)
    assert enrollment.data == {"verificationType": "sms", "destination": "+4*******0958"}
    [sms] = sms_gateway.requests  # the mailbox takes only Jane's email; the phone goes to the gateway
    assert sms["body"]["to"] == "+442079460958"
    view = await world.service.complete_enrollment(
        JANE, enrollment.enrollment_id, EnrollmentCompletion(response={"code": code_from_sms(sms)})
    )
    assert view.format is CredentialFormat.PHONE_NUMBER
    assert view.alias == "+4*******0958"
    assert {c.id for c in await world.service.list_credentials(JANE)} == {"app-email", view.id}


async def test_another_session_cannot_complete_an_enrolment(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    principal = Principal("newbie", "s-1")
    start = await world.service.begin_enrollment(
        principal, EnrollmentRequest(method="otp", params={"email": "n@example.org"})
    )
    with pytest.raises(errors.ChallengeNotFound):
        await world.service.complete_enrollment(
            Principal("newbie", "s-2"), start.enrollment_id, EnrollmentCompletion(response={"code": mailbox.code_for()})
        )
    with pytest.raises(errors.ChallengeNotFound):
        await world.service.complete_enrollment(
            MALLORY, start.enrollment_id, EnrollmentCompletion(response={"code": mailbox.code_for()})
        )
    assert await world.service.list_credentials(MALLORY) == []


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"email": "not an address"}, "params.email"),
        ({"phoneNumber": "4155554567"}, "params.phoneNumber"),
        ({"email": "a@example.com", "phoneNumber": "+14155554567"}, "params"),
        ({}, "params"),
        ({"address": "a@example.com"}, "params.address"),
        ({"email": 5}, "params.email"),
    ],
)
async def test_bad_enrolment_parameters_are_validation_errors(
    otp_world_factory: Any, params: dict[str, Any], path: str
) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    with pytest.raises(errors.ValidationError) as caught:
        await world.service.begin_enrollment(Principal("newbie", "s-1"), EnrollmentRequest(method="otp", params=params))
    assert caught.value.code == "validation_error"
    assert [e["path"] for e in caught.value.errors] == [path]
    assert mailbox.deliveries == []


async def test_an_address_already_linked_is_refused(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    principal = Principal("newbie", "s-1")
    start = await world.service.begin_enrollment(
        principal, EnrollmentRequest(method="otp", params={"email": "n@example.org"})
    )
    await world.service.complete_enrollment(
        principal, start.enrollment_id, EnrollmentCompletion(response={"code": mailbox.code_for()})
    )
    world.clock.advance(60)
    challenge = await world.service.begin(
        principal, ChallengeRequest(method="otp", requested_scopes=("credential:link",))
    )
    token = await verify(world, challenge.challenge_id, mailbox.code_for(), principal)
    with pytest.raises(errors.EnrollmentFailed, match="already linked"):
        await world.service.begin_enrollment(
            principal,
            EnrollmentRequest(method="otp", params={"email": "N@Example.org"}),
            token=token.elevated_access_token,
        )


async def test_codes_to_a_new_address_are_rate_limited_across_accounts(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    request = EnrollmentRequest(method="otp", params={"email": "victim@example.org"})
    await world.service.begin_enrollment(Principal("a", "s"), request)
    with pytest.raises(errors.RateLimited) as caught:
        await world.service.begin_enrollment(Principal("b", "s"), request)
    assert caught.value.details["retryAfter"] == 30
    assert len(mailbox.deliveries) == 1


async def test_one_account_cannot_spray_codes_to_many_addresses(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    principal = Principal("sprayer", "s")
    for n in range(10):
        await world.service.begin_enrollment(
            principal, EnrollmentRequest(method="otp", params={"email": f"target{n}@example.org"})
        )
    with pytest.raises(errors.RateLimited):
        await world.service.begin_enrollment(
            principal, EnrollmentRequest(method="otp", params={"email": "target10@example.org"})
        )
    assert len(mailbox.deliveries) == 10


async def test_an_enrolment_code_expires_after_code_ttl(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory({"code_ttl": 120}, mailbox=mailbox)
    principal = Principal("newbie", "s-1")
    start = await world.service.begin_enrollment(
        principal, EnrollmentRequest(method="otp", params={"email": "n@example.org"})
    )
    assert mailbox.deliveries[0].expires_at == world.clock.now() + 120
    world.clock.advance(121)
    with pytest.raises(errors.ChallengeExpired):
        await world.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response={"code": mailbox.code_for()})
        )
    assert await world.service.list_credentials(principal) == []


# --- the client half against the service -------------------------------------------------------


async def test_client_method_asks_the_person_for_the_code(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    start = await begin(world)
    code = mailbox.code_for()
    assert code is not None
    prompter = ScriptedPrompter(codes=[f"{code}\n"])
    method = OtpClientMethod()
    answer = await method.answer({"challengeId": start.challenge_id, "data": start.data}, ClientContext(prompter))
    assert prompter.asked == [("Enter the 6-digit code sent by email to j***@example.com", ())]
    assert prompter.told == []
    assert answer.response == {"code": code}
    token = await verify(world, start.challenge_id, answer.response["code"])
    assert token.scopes == (SCOPE,)


async def test_unattended_mailbox_reads_the_code_back_for_the_client(otp_world_factory: Any) -> None:
    method = OtpClientMethod()
    mailbox = method.unattended()
    world = await otp_world_factory(mailbox=mailbox)
    world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    world.app.give("jane", "app-email", "jane@example.com")
    email_start = await begin(world, credential_id="app-email")
    phone_start = await begin(world, credential_id="app-phone")
    silent = ScriptedPrompter()
    email_answer = await method.answer({"data": email_start.data}, ClientContext(silent, actor=mailbox))
    phone_answer = await method.answer({"data": phone_start.data}, ClientContext(silent, actor=mailbox))
    assert silent.asked == [] and silent.told == []
    await verify(world, phone_start.challenge_id, phone_answer.response["code"])  # type: ignore[index]
    await verify(world, email_start.challenge_id, email_answer.response["code"])  # type: ignore[index]


async def test_mailbox_takes_codes_ahead_of_a_configured_smtp_relay(
    otp_world_factory: Any, smtp_server_factory: Any
) -> None:
    server = smtp_server_factory("none")
    mailbox = Mailbox()
    world = await otp_world_factory(smtp_section(server), mailbox=mailbox)
    world.app.give("jane", "app-email", "jane@example.com")
    await begin(world)
    assert len(mailbox.deliveries) == 1
    assert server.messages == []
    world.pm.unregister(mailbox)
    world.clock.advance(31)
    await begin(world)
    assert len(server.messages) == 1
    assert len(mailbox.deliveries) == 1


async def test_client_enrolment_with_prompts(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory(mailbox=mailbox)
    method = OtpClientMethod()
    principal = Principal("newbie", "s-1")
    prompter = ScriptedPrompter(codes=["+1 415 555 4567"], choices=[1])
    params = await method.enrollment_params(ClientContext(prompter))
    assert params == {"phoneNumber": "+1 415 555 4567"}
    start = await world.service.begin_enrollment(principal, EnrollmentRequest(method="otp", params=dict(params)))
    response = await method.answer_enrollment(
        {"enrollmentId": start.enrollment_id, "data": start.data},
        ClientContext(prompter, options={"code": mailbox.code_for()}),
    )
    view = await world.service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion(dict(response)))
    assert view.alias == "+1******4567"
    assert (await method.enrollment_params(ClientContext(prompter, options={"email": "x@example.com"}))) == {
        "email": "x@example.com"
    }
