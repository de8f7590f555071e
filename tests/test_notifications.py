"""Security notices: who is told, what they read (three locales, overridable templates), and
that a notice never fails or undoes the change it is about. The real SMTP and SMS transports are
tested in stepup-otp (tests/test_notices.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from stepup_core import errors, hookimpl
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import (
    ChallengeRequest,
    Credential,
    CredentialFormat,
    EnrollmentRequest,
    Factor,
    Message,
    Principal,
    VerifyRequest,
)
from stepup_core.notifications import NoticeTemplates
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.verifier import Attempt, NewCredential

ALICE = Principal("alice", "alice-session")
PIN = "4821"
OWNER = "alice@example.test"


@attrs.frozen
class AddressPin(PinVerifier):
    """Links an email address at once (``params.email``), standing in for an OTP link."""

    name: str = "address"

    def _credential(self, attempt: Attempt, digest: str) -> NewCredential:
        address = str(attempt.params["email"])
        return attrs.evolve(super()._credential(attempt, digest), identifier=address,
                            alias=address[0] + "***@" + address.split("@")[1])


@attrs.define
class Outbox:
    """Captures every message; ``fail`` makes sending raise."""

    sent: list[Message] = attrs.field(factory=list)
    fail: bool = False

    name = "outbox"

    async def send(self, message: Message) -> None:
        if self.fail:
            raise OSError("relay down")
        self.sent.append(message)

    @hookimpl
    def stepup_deliver_message(self, message: Message, config: Any) -> Outbox:
        return self

    def to(self, kind: str) -> list[str]:
        return sorted(m.address for m in self.sent if m.kind == kind)


@attrs.define
class World:
    service: StepUpService
    clock: ManualClock
    outbox: Outbox
    app: ThrowawayPlugin

    async def token(self, *scopes: str) -> str:
        start = await self.service.begin(ALICE, ChallengeRequest(method="pin", requested_scopes=scopes))
        grant = await self.service.verify(
            ALICE, VerifyRequest(method="pin", challenge_id=start.challenge_id, response={"code": PIN})
        )
        return grant.elevated_access_token

    async def link(self, address: str, token: str) -> str:
        start = await self.service.begin_enrollment(
            ALICE, EnrollmentRequest(method="address", params={"pin": PIN, "email": address}), token
        )
        assert start.credential is not None
        return start.credential.id


@pytest.fixture
async def world_factory() -> Any:
    services: list[StepUpService] = []

    async def build(**config: Any) -> World:
        pm = get_plugin_manager(load_entrypoints=False)
        app = ThrowawayPlugin([
            attrs.evolve(PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False)),
            AddressPin(formats=(CredentialFormat.EMAIL,)),
        ])
        app.app_credentials["alice"] = [
            Credential(id="app-email", user_id="alice", method="", format=CredentialFormat.EMAIL,
                       factor=Factor.REAUTH, created_at=0.0, sign_in=True, identifier=OWNER),
        ]
        outbox = Outbox()
        pm.register(app, name="app")
        pm.register(outbox, name="outbox")
        clock = ManualClock()
        settings = {"store": "memory:", "secret_key": "cd" * 32, "app_name": "Acme", **config}
        service = await StepUpService.create(config_from_mapping(settings), pm=pm, clock=clock)
        services.append(service)
        # Alice's MFA PIN, set up by the application (so no notice is about it).
        await service.credentials.save(
            Credential(id="pin-1", user_id="alice", method="pin", format=CredentialFormat.TOTP, factor=Factor.MFA,
                       created_at=clock.now(), data=app.verifier("pin").credential_data(service.keys, PIN))
        )
        return World(service, clock, outbox, app)

    yield build
    for service in services:
        await service.close()


async def test_a_session_that_links_its_own_address_cannot_silence_the_owner(world_factory: Any) -> None:
    """One step-up for link and unlink: link the attacker's address, unlink the owner's second
    address, link a passkey-like PIN. Every notice reaches the addresses from before the step-up."""
    world = await world_factory()
    token = await world.token("credential:link", "credential:unlink")
    second = await world.link("alice.second@example.test", token)
    world.outbox.sent.clear()

    attacker = await world.link("mallory@evil.example", token)
    assert world.outbox.to("credential_linked") == sorted(["alice.second@example.test", OWNER, "mallory@evil.example"])

    await world.service.delete_credential(ALICE, second, token)
    assert world.outbox.to("credential_unlinked") == sorted(
        ["alice.second@example.test", OWNER, "mallory@evil.example"]
    )  # the address going is told of its own removal

    world.app.app_credentials["alice"] = []  # even were the owner's sign-in address gone too
    world.outbox.sent.clear()
    await world.link("mallory.two@evil.example", token)
    assert "alice.second@example.test" in world.outbox.to("credential_linked")  # removed, still told

    world.clock.advance(86_401)  # a day on, no elevated token from that step-up is alive
    world.outbox.sent.clear()
    await world.service.delete_credential(ALICE, attacker, await world.token("credential:unlink"))
    assert world.outbox.to("credential_unlinked") == ["mallory.two@evil.example", "mallory@evil.example"]


async def test_a_lockout_is_told_with_its_duration(world_factory: Any) -> None:
    world = await world_factory(limits={"lockout_failures": 2, "lockout_window": 600})
    start = await world.service.begin(ALICE, ChallengeRequest(method="pin", requested_scopes=("user:update",)))
    for _ in range(2):
        with pytest.raises(errors.VerificationFailed):
            await world.service.verify(
                ALICE, VerifyRequest(method="pin", challenge_id=start.challenge_id, response={"code": "0000"})
            )
    [notice] = [m for m in world.outbox.sent if m.kind == "locked_out"]
    assert notice.address == OWNER
    assert notice.subject == "Acme: verification locked after failed attempts"
    assert "locked for\n10 minutes" in notice.text
    assert notice.html is not None and "<html>" in notice.html


async def test_german_and_french_notices(world_factory: Any) -> None:
    german = await world_factory(plugins={"notifications": {"locale": "de"}})
    await german.link("alice.second@example.test", await german.token("credential:link"))
    notice = german.outbox.sent[0]
    assert notice.subject == "Acme: E-Mail-Adresse zu Ihrem Konto hinzugefügt"
    assert notice.text.startswith("Hallo,\n\nFolgendes wurde am ")
    assert "E-Mail-Adresse (a***@example.test)" in notice.text
    french = await world_factory(plugins={"notifications": {"locale": "fr"}})
    await french.link("alice.second@example.test", await french.token("credential:link"))
    notice = french.outbox.sent[0]
    assert notice.subject == "Acme : ajout à votre compte (adresse e-mail)"
    assert "Si c'était vous, vous n'avez rien à faire." in notice.text


async def test_templates_are_overridable_and_a_new_locale_can_be_added(world_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('[credential_linked]\nsubject = "[${app}] new ${credential}"\n')
    (tmp_path / "nl.toml").write_text('[formats]\nemail = "e-mailadres"\n'
                                      '[credential_linked]\nsubject = "${app}: ${credential} toegevoegd"\n')
    world = await world_factory(plugins={"notifications": {"templates_dir": str(tmp_path)}})
    await world.link("alice.second@example.test", await world.token("credential:link"))
    notice = world.outbox.sent[0]
    assert notice.subject == "[Acme] new email address"
    assert notice.text.startswith("Hello,")  # keys left out keep the built-in text
    dutch = await world_factory(plugins={"notifications": {"templates_dir": str(tmp_path), "locale": "nl"}})
    await dutch.link("alice.second@example.test", await dutch.token("credential:link"))
    assert dutch.outbox.sent[0].subject == "Acme: e-mailadres toegevoegd"


@pytest.mark.parametrize(
    ("files", "settings", "message"),
    [
        ({}, {"locale": "xx"}, "no notification templates for locale 'xx'"),
        ({"en.toml": '[credential_linked]\nsubject = "${nope}"\n'}, {}, r"unknown or malformed placeholder 'nope'"),
        ({"en.toml": '[credential_linked]\nbody = "x"\n'}, {}, r"unknown keys \['body'\]"),
        ({"en.toml": "[welcome]\ntext = 'x'\n"}, {}, r"unknown table \[welcome\]"),
        ({}, {"channels": ["pigeon"]}, "channels may be 'email' and 'sms'"),
    ],
)
async def test_bad_templates_or_settings_fail_at_startup(
    world_factory: Any, tmp_path: Path, files: dict[str, str], settings: dict[str, Any], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(errors.ConfigError, match=message):
        await world_factory(plugins={"notifications": {"templates_dir": str(tmp_path), **settings}})


async def test_a_failed_notice_never_fails_the_change(world_factory: Any) -> None:
    world = await world_factory()
    world.outbox.fail = True
    token = await world.token("credential:link")
    credential_id = await world.link("alice.second@example.test", token)
    assert any(c.id == credential_id for c in await world.service.list_credentials(ALICE))
    failed = world.app.of_type("notification_failed")
    assert sorted(e.details["channel"] for e in failed) == ["email", "email"]
    assert all(e.reason == "OSError" and "example.test" not in repr(e) for e in failed)


async def test_notices_can_be_turned_off(world_factory: Any) -> None:
    world = await world_factory(plugins={"notifications": {"enabled": False}})
    await world.link("alice.second@example.test", await world.token("credential:link"))
    assert world.outbox.sent == []


def test_values_are_escaped_in_html_and_the_subject_is_one_line() -> None:
    templates = NoticeTemplates.load("en")
    rendered = templates.render(
        "credential_linked", app="Acme\r\nBcc: x@evil.example", at=0.0, credential_format="passkey",
        alias="<img src=x onerror=alert(1)>",
    )
    assert "<img" not in rendered.html and "&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert "passkey (<img src=x onerror=alert(1)>)" in rendered.text  # plain text shows it as it is
    assert "1970-01-01 00:00 UTC" in rendered.text


def test_the_sample_notice_in_the_docs_is_what_the_template_renders() -> None:
    from datetime import datetime, timezone

    page = (Path(__file__).resolve().parents[1] / "docs" / "observability.md").read_text(encoding="utf-8")
    sample = page.split("The text part of a notice after an email address was linked:", 1)[1]
    sample = sample.split("```text\n", 1)[1].split("```", 1)[0]
    at = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc).timestamp()
    rendered = NoticeTemplates.load("en").render(
        "credential_linked", app="Acme", at=at, credential_format="email", alias="m***@evil.example"
    )
    assert rendered.text == sample


async def test_an_operator_reset_is_told_to_the_user(world_factory: Any) -> None:
    """A reset talked out of support by someone posing as the user: the user still hears of it."""
    from stepup_core.admin import Admin, Operator

    world = await world_factory()
    world.outbox.sent.clear()
    done = await Admin(world.service).reset_mfa("alice", Operator("dana"))
    assert [c.id for c in done.removed] == ["pin-1"]
    assert world.outbox.to("credential_unlinked") == [OWNER]
