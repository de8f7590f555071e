"""stepup-totp over HTTP: the real server on loopback, StepUpClient with the totp client half.

Every answer the client receives is checked against stepup's OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest
from stepup_totp.client import AuthenticatorApp
from stepup_totp.otp import code_at

from stepup_core import errors
from stepup_core.client import ScriptedPrompter
from stepup_core.clock import ManualClock
from stepup_core.service import StepUpService
from stepup_core.testing.stack import StepUpStack


@pytest.fixture
async def http_stack(service: StepUpService) -> AsyncIterator[StepUpStack]:
    async with StepUpStack.serve(service, users=["alice"]) as stack:
        yield stack


async def test_enrol_and_step_up_unattended(http_stack: StepUpStack, app: AuthenticatorApp, clock: ManualClock) -> None:
    async with http_stack.client(actors={"totp": app}, prompter=ScriptedPrompter()) as client:
        device = await client.enroll("totp", alias="Phone", account_name="alice@example.com")
        assert device.method == "totp" and device.alias == "Phone"
        assert device.details["label"] == "Example Wallet:alice@example.com"
        assert app.entries[0].key.label == "Example Wallet:alice@example.com"
        clock.advance(30)
        token = await client.prompt_step_up_auth("wallet:export")
        assert token is not None and token.method == "totp"
        # The same code again (the app still shows it) is a replay.
        with pytest.raises(errors.ReplayDetected):
            await client.verify_totp_mfa(app.code(), requested_scopes=["wallet:export"])
        assert client.state.error is not None
        with pytest.raises(errors.InvalidResponse):
            await client.verify_totp_mfa("12ab56", requested_scopes=["wallet:export"])
        code = app.code()
        with pytest.raises(errors.VerificationFailed) as wrong:
            await client.verify_totp_mfa(code[:-1] + str((int(code[-1]) + 1) % 10), requested_scopes=["wallet:export"])
        assert wrong.value.code == "verification_failed"
    assert ("POST", "/stepup/verify", 400) in http_stack.validator.seen


async def test_second_device_and_choosing_the_default(
    http_stack: StepUpStack, app: AuthenticatorApp, clock: ManualClock
) -> None:
    prompter = ScriptedPrompter(choices=["Tablet"])
    async with http_stack.client(actors={"totp": app}, prompter=prompter) as client:
        phone = await client.enroll("totp", alias="Phone")
        app.link(phone.id)
        clock.advance(30)
        await client.prompt_step_up_auth("credential:link")
        clock.advance(30)
        tablet = await client.enroll("totp", alias="Tablet", digits=8)
        app.link(tablet.id)
        assert sorted(c.alias or "" for c in await client.list_credentials()) == ["Phone", "Tablet"]
        clock.advance(30)
        # Two devices: the prompter is asked which one; the app answers for the one chosen.
        update = await client.prompt_step_up_auth("credential:update")
        assert update is not None
        assert prompter.asked and "Tablet" in " ".join(prompter.asked[0][1])
        status, view = await http_stack.api(
            "alice", "PATCH", f"/credentials/{phone.id}", {"isDefault": True}, token=update.elevated_access_token
        )
        assert status == 200, view
        assert view["isDefault"] is True
        clock.advance(30)
        # Without a device id the server now uses the phone.
        with pytest.raises(errors.VerificationFailed):
            await client.verify_totp_mfa(app.code({"credentialId": tablet.id}), requested_scopes=["wallet:export"])
        issued = await client.verify_totp_mfa(app.code({"credentialId": phone.id}), requested_scopes=["wallet:export"])
        assert issued.method == "totp"


@attrs.define
class PersonWithAnApp:
    """A person at a terminal: reads the setup key they are shown, types the app's codes."""

    clock: ManualClock
    told: list[str] = attrs.field(factory=list)
    asked: list[str] = attrs.field(factory=list)
    secret: str | None = None

    async def choose(self, title: str, options: Sequence[str]) -> int:
        return 0

    async def tell(self, message: str) -> None:
        self.told.append(message)
        found = re.search(r"enter this key by hand: ([A-Z2-7]+)", message)
        if found:
            self.secret = found.group(1)

    async def ask_code(self, label: str) -> str:
        self.asked.append(label)
        assert self.secret is not None, "asked for a code before being shown the key"
        return code_at(self.secret, self.clock.now())


async def test_a_person_enrols_from_the_terminal(http_stack: StepUpStack, clock: ManualClock) -> None:
    person = PersonWithAnApp(clock)
    async with http_stack.client(prompter=person) as client:
        device = await client.enroll("totp")
        assert device.method == "totp"
        assert "Scan this QR code" in person.told[0] and "█" in person.told[0]
        clock.advance(30)
        token = await client.prompt_mfa("wallet:export")
        assert token is not None and token.method == "totp"
    assert person.asked == [
        "Code shown by your authenticator app for the new entry",
        "Code from your authenticator app",
    ]


