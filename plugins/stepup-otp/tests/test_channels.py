"""``[plugins.otp] channels``: a server that sends codes over one channel only never offers,
uses or links credentials of the other, and the startup check asks a sender only for it."""

from __future__ import annotations

from typing import Any

import pytest
from stepup_otp.client import Mailbox

from stepup_core import errors
from stepup_core.models import ChallengeRequest, CredentialFormat, EnrollmentRequest, Principal

JANE = Principal("jane", "sess-1")


async def test_an_email_only_server_leaves_phone_numbers_alone(otp_world_factory: Any) -> None:
    mailbox = Mailbox()
    world = await otp_world_factory({"channels": ["email"]}, mailbox=mailbox)
    world.app.give("jane", "app-phone", "+1 415 555 4567", CredentialFormat.PHONE_NUMBER)
    world.app.give("jane", "app-email", "jane@example.com")
    check = await world.service.check(JANE, "user:update")
    assert [c.id for c in check.credentials] == ["app-email"]
    with pytest.raises(errors.NoEligibleCredential, match="does not send codes by sms"):
        await world.service.begin(JANE, ChallengeRequest(method="otp", credential_id="app-phone",
                                                         requested_scopes=("user:update",)))
    start = await world.service.begin(JANE, ChallengeRequest(method="otp", requested_scopes=("user:update",)))
    assert start.credential_id == "app-email"
    with pytest.raises(errors.ValidationError) as info:
        await world.service.begin_enrollment(
            Principal("newbie", "s"), EnrollmentRequest(method="otp", params={"phoneNumber": "+14155550123"})
        )
    assert [e["path"] for e in info.value.errors] == ["params.phoneNumber"]
    assert [d.channel for d in mailbox.deliveries] == ["email"]


async def test_the_startup_check_asks_only_for_the_channels_in_use(otp_world_factory: Any, unused_port: int) -> None:
    smtp = {"host": "127.0.0.1", "port": unused_port, "security": "none", "sender": "no-reply@example.test"}
    both = await otp_world_factory({"smtp": smtp})
    with pytest.raises(errors.ConfigError, match="sends codes by sms"):
        both.service.check_code_delivery()
    email_only = await otp_world_factory({"smtp": smtp, "channels": ["email"]})
    email_only.service.check_code_delivery()


@pytest.mark.parametrize("channels", [[], ["fax"], ["email", "email"]])
async def test_channels_must_be_known_and_distinct(otp_world_factory: Any, channels: list[str]) -> None:
    with pytest.raises(errors.ConfigError, match=r"plugins\.otp\..* channels must name one or both of email, sms"):
        await otp_world_factory({"channels": channels})
