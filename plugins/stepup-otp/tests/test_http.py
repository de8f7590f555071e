"""stepup-otp over HTTP: the real server on loopback, StepUpClient with the otp client half.

Every answer the client receives is checked against stepup's OpenAPI document.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from stepup_otp.client import Mailbox

from stepup_core import errors
from stepup_core.client import ScriptedPrompter
from stepup_core.models import CredentialFormat, Principal
from stepup_core.testing.stack import StepUpStack

#: jane signed in with her email address; newbie has nothing yet.
USERS = (Principal("jane", "s-jane", sign_in_credential_id="app-email"), "newbie")


@attrs.define
class Http(StepUpStack):
    """The stack with the service's surroundings (``world``: the application's credentials)."""

    world: Any = None


HttpFactory = Callable[..., Awaitable[Http]]


@pytest.fixture
async def http_stack(otp_world_factory: Any) -> AsyncIterator[HttpFactory]:
    async with contextlib.AsyncExitStack() as running:

        async def build(section: dict[str, Any] | None = None, mailbox: Mailbox | None = None) -> Http:
            world = await otp_world_factory(section, mailbox=mailbox)
            world.app.give("jane", "app-email", "jane@example.com")
            stack = await running.enter_async_context(Http.serve(world.service, users=USERS))
            stack.world = world
            return stack

        yield build


async def test_send_otp_and_verify_otp_with_a_code_from_the_mail_server(
    http_stack: HttpFactory, smtp_server_factory: Any
) -> None:
    server = smtp_server_factory("none")
    stack = await http_stack(
        {"smtp": {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"}}
    )
    client = stack.client("jane")
    check = await client.check_step_up_auth("wallet:export")
    assert check.is_required
    assert [(c.id, c.format) for c in check.credentials] == [("app-email", CredentialFormat.EMAIL)]

    sent = await client.send_otp(requested_scopes=["wallet:export"])
    assert (sent.verification_type, sent.credential_id, sent.destination) == ("email", "app-email", "j***@example.com")
    [mail] = server.messages
    assert await client.verify_otp("000000" if mail.code() != "000000" else "111111") is None
    assert client.state.error is not None and client.state.error.code == "verification_failed"
    token = await client.verify_otp(mail.code())
    assert token is not None and token.scopes == ("wallet:export",)
    assert not (await client.check_step_up_auth("wallet:export")).is_required


async def test_unattended_step_up_reads_the_code_from_the_mailbox(http_stack: HttpFactory) -> None:
    mailbox = Mailbox()
    stack = await http_stack(mailbox=mailbox)
    client = stack.client("jane", prompter=ScriptedPrompter(), actors={"otp": mailbox})
    token = await client.prompt_step_up_auth("wallet:export")
    assert token is not None and token.method == "otp"
    assert [d.address for d in mailbox.deliveries] == ["jane@example.com"]


async def test_prompted_code_is_asked_with_the_masked_destination(http_stack: HttpFactory) -> None:
    mailbox = Mailbox()
    stack = await http_stack(mailbox=mailbox)

    class CodeFromMailbox(ScriptedPrompter):
        async def ask_code(self, label: str) -> str:
            self.asked.append((label, ()))
            code = mailbox.code_for()
            assert code is not None
            return code

    prompter = CodeFromMailbox()
    client = stack.client("jane", prompter=prompter)
    token = await client.prompt_reauthenticate("user:update")
    assert token.scopes == ("user:update",)
    assert ("Enter the 6-digit code sent by email to j***@example.com", ()) in prompter.asked


async def test_failed_delivery_is_a_502_problem_and_the_client_raises_it(
    http_stack: HttpFactory, sms_gateway: Any
) -> None:
    sms_gateway.status = 503
    stack = await http_stack({"sms_gateway": {"url": sms_gateway.url}})
    stack.world.app.give("jane", "app-phone", "+14155554567", CredentialFormat.PHONE_NUMBER)
    client = stack.client("jane")
    with pytest.raises(errors.DeliveryFailed) as caught:
        await client.send_otp("app-phone", requested_scopes=["wallet:export"])
    # The server keeps the relay's details in its log; the caller learns what to do.
    assert caught.value.code == "delivery_failed"
    assert "try again" in caught.value.message
    assert "503" not in caught.value.message
    assert ("POST", "/stepup/challenges", 502) in stack.validator.seen
    with pytest.raises(errors.ChallengeNotFound):
        await client.verify_otp("123456")


async def test_enrolling_a_new_email_through_the_client(http_stack: HttpFactory) -> None:
    mailbox = Mailbox(link_address="new.user@example.org")
    stack = await http_stack(mailbox=mailbox)
    client = stack.client("newbie", prompter=ScriptedPrompter(), actors={"otp": mailbox})
    view = await client.enroll("otp")
    assert view.format is CredentialFormat.EMAIL
    assert view.alias == "n***@example.org"
    assert [c.id for c in await client.list_credentials()] == [view.id]
    assert mailbox.deliveries[-1].purpose == "enrollment"


async def test_a_bad_address_is_a_422_naming_the_field(http_stack: HttpFactory) -> None:
    stack = await http_stack(mailbox=Mailbox())
    client = stack.client("newbie")
    with pytest.raises(errors.ValidationError) as caught:
        await client.begin_enrollment("otp", {"email": "jane@@example.com"})
    assert ("POST", "/stepup/enrollments", 422) in stack.validator.seen
    assert "params.email" in str(caught.value.details) + caught.value.message
