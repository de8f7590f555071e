"""Security notices over the same real transports as codes: an SMTP server (aiosmtpd) and an
HTTP SMS gateway, both on loopback."""

from __future__ import annotations

from typing import Any

from stepup_core.models import (
    ChallengeRequest,
    CredentialFormat,
    EnrollmentCompletion,
    EnrollmentRequest,
    Principal,
    VerifyRequest,
)

from .conftest import CODE_IN_TEXT

JANE = Principal("jane", "sess-1", sign_in_credential_id="app-email")
SCOPES = ("credential:link", "credential:unlink")


def smtp_section(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "smtp": {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"},
        **extra,
    }


def code_in(mail: Any) -> str:
    match = CODE_IN_TEXT.search(mail.text())
    assert match, mail.text()
    return match.group(1)


async def test_linking_an_address_tells_the_owner_and_the_new_address_by_real_email(
    otp_world_factory: Any, smtp_server_factory: Any, sms_gateway: Any
) -> None:
    """A session that links its own address (the attacker's, say) cannot keep the owner from
    hearing of it: the notice goes to the address from before the step-up as well."""
    server = smtp_server_factory("none")
    section = smtp_section(server, sms_gateway={"url": sms_gateway.url})
    world = await otp_world_factory(section)
    world.app.give("jane", "app-email", "jane@example.com")
    world.app.give("jane", "app-phone", "+442079460958", fmt=CredentialFormat.PHONE_NUMBER, sign_in=False)

    start = await world.service.begin(JANE, ChallengeRequest(method="otp", requested_scopes=SCOPES))
    answer = {"code": code_in(server.messages[-1])}
    token = await world.service.verify(JANE, VerifyRequest("otp", answer, challenge_id=start.challenge_id))
    world.clock.advance(31)
    enrolment = await world.service.begin_enrollment(
        JANE, EnrollmentRequest(method="otp", params={"email": "mallory@evil.example"}), token.elevated_access_token
    )
    view = await world.service.complete_enrollment(
        JANE, enrolment.enrollment_id, EnrollmentCompletion(response={"code": code_in(server.messages[-1])}),
        token.elevated_access_token,
    )
    linked = [m for m in server.messages if "added to your account" in str(m.message["Subject"])]
    assert sorted(r for m in linked for r in m.rcpt_tos) == ["jane@example.com", "mallory@evil.example"]
    sent = linked[0]
    assert sent.message["Subject"] == "Acme: email address added to your account"
    assert sent.message["From"] == "no-reply@acme.example"
    text, html = sent.text(), sent.html()
    print("\n--- rendered notice (text part) ---\n" + text + "--- end ---")
    assert "email address (m***@evil.example)" in text
    assert "mallory@evil.example" not in text  # the alias is masked; the full address is not shown
    assert "<p style=\"font-weight: bold;\">email address (m***@evil.example)</p>" in html
    [sms] = [r for r in sms_gateway.requests if "added to your account" in r["body"]["text"]]
    assert sms["body"]["to"] == "+442079460958"
    assert sms["body"]["text"].startswith("Acme: email address added to your account on ")

    # Unlinking tells the address that is going, too.
    world.clock.advance(31)
    mails_before = len(server.messages)
    delete = await world.service.begin(
        JANE, ChallengeRequest(method="otp", credential_id="app-email", requested_scopes=("credential:unlink",))
    )
    answer = {"code": code_in(server.messages[-1])}
    unlink = await world.service.verify(JANE, VerifyRequest("otp", answer, challenge_id=delete.challenge_id))
    assert len(server.messages) == mails_before + 1
    await world.service.delete_credential(JANE, view.id, unlink.elevated_access_token)
    removed = [m for m in server.messages if "removed from your account" in str(m.message["Subject"])]
    assert sorted(r for m in removed for r in m.rcpt_tos) == ["jane@example.com", "mallory@evil.example"]
    assert [e.details for e in world.events if e.type == "notification_sent"].count(
        {"kind": "credential_unlinked", "channel": "email", "sender": "smtp"}
    ) == 2
