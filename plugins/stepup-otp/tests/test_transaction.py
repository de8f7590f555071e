"""A code that approves a transaction says what it approves: real SMTP (aiosmtpd) and a real HTTP
SMS gateway on loopback receive "Approve 120.00 EUR to ACME Ltd: code 123456"."""

from __future__ import annotations

import re
from typing import Any

import pytest
from stepup_otp import plugin as otp_plugin

from stepup_core import errors, hookimpl
from stepup_core.models import ChallengeRequest, CredentialFormat, Principal, VerifyRequest
from stepup_core.service import StepUpService
from stepup_core.testing.pytest_plugin import ServiceFactory, plugin_manager
from stepup_core.transaction import transaction_hash

from .conftest import AppCredentials

ALICE = Principal("alice", "alice-session")
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}
APPROVE_LINE = re.compile(r"^Approve 120\.00 EUR to ACME Ltd: code (\d{6})\r?$", re.MULTILINE)


class Summary:
    """The application's summary of a payment."""

    @hookimpl
    def stepup_transaction_summary(self, scopes: tuple[str, ...], transaction: dict[str, Any]) -> str | None:
        if "payments:send" not in scopes:
            return None
        return f"Approve {transaction['amount']} {transaction['currency']} to {transaction['payee']}"


async def _service(factory: ServiceFactory, section: dict[str, Any], *extra: tuple[str, object]) -> StepUpService:
    app = AppCredentials()
    app.give("alice", "email-alice", "alice@example.com")
    app.give("alice", "phone-alice", "+14155554567", CredentialFormat.PHONE_NUMBER, sign_in=False)
    pm = plugin_manager([("otp", otp_plugin), ("app", app), *extra])
    config = {"secret_key": "c" * 64, "app_name": "Acme", "plugins": {"otp": section},
              "scopes": {"payments:send": {"committing_method_required": True, "transaction_required": True}}}
    return await factory(config, pm=pm)


async def _begin(service: StepUpService, credential_id: str, details: Any = PAYMENT) -> Any:
    return await service.begin(ALICE, ChallengeRequest(
        method="otp", credential_id=credential_id, requested_scopes=("payments:send",), transaction=details))


async def test_the_email_says_what_the_code_approves(
    stepup_service_factory: ServiceFactory, smtp_server_factory: Any
) -> None:
    server = smtp_server_factory("none")
    smtp = {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"}
    service = await _service(stepup_service_factory, {"smtp": smtp}, ("summary", Summary()))
    assert {m.name: m.commits_transaction for m in service.methods()} == {"otp": True}

    start = await _begin(service, "email-alice")
    [mail] = server.messages
    match = APPROVE_LINE.search(mail.text())
    assert match is not None, mail.text()
    assert mail.text().startswith(match.group(0).rstrip())
    assert "approves exactly this, and nothing else" in mail.text()
    assert "Approve 120.00 EUR to ACME Ltd" in mail.html() and f">{match.group(1)}</p>" in mail.html()

    issued = await service.verify(ALICE, VerifyRequest(
        method="otp", challenge_id=start.challenge_id, response={"code": match.group(1)}))
    assert issued.transaction_hash == transaction_hash(PAYMENT) and issued.single_use


async def test_the_sms_says_what_the_code_approves(stepup_service_factory: ServiceFactory, sms_gateway: Any) -> None:
    service = await _service(stepup_service_factory, {"sms_gateway": {"url": sms_gateway.url}}, ("summary", Summary()))
    start = await _begin(service, "phone-alice")
    [request] = sms_gateway.requests
    text = request["body"]["text"]
    match = re.fullmatch(r"Approve 120\.00 EUR to ACME Ltd: code (\d{6}) \(Acme\)", text)
    assert match is not None, text
    assert request["body"]["to"] == "+14155554567"
    issued = await service.verify(ALICE, VerifyRequest(
        method="otp", challenge_id=start.challenge_id, response={"code": match.group(1)}))
    assert issued.transaction_hash == transaction_hash(PAYMENT)


async def test_without_a_summary_hook_every_detail_is_named_and_nothing_is_injected(
    stepup_service_factory: ServiceFactory, smtp_server_factory: Any, sms_gateway: Any
) -> None:
    server = smtp_server_factory("none")
    smtp = {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"}
    service = await _service(stepup_service_factory, {"smtp": smtp, "sms_gateway": {"url": sms_gateway.url}})
    # A payee chosen by whoever started the payment: markup and placeholder names stay text.
    details = {**PAYMENT, "payee": "<b>Evil</b> {code} {to}"}
    await _begin(service, "email-alice", details)
    [mail] = server.messages
    first = mail.text().splitlines()[0]
    assert re.fullmatch(
        r"Approve amount 120\.00, currency EUR, payee <b>Evil</b> \{code\} \{to\}: code \d{6}", first
    ), first
    assert "&lt;b&gt;Evil&lt;/b&gt;" in mail.html() and "<b>Evil" not in mail.html()

    service.clock.advance(60)  # type: ignore[attr-defined]
    await _begin(service, "phone-alice", details)
    [request] = sms_gateway.requests
    assert request["body"]["to"] == "+14155554567"
    assert re.fullmatch(
        r"Approve amount 120\.00, currency EUR, payee <b>Evil</b> \{code\} \{to\}: code \d{6} \(Acme\)",
        request["body"]["text"],
    ), request["body"]["text"]


async def test_a_code_for_one_payment_does_not_approve_another(
    stepup_service_factory: ServiceFactory, smtp_server_factory: Any
) -> None:
    server = smtp_server_factory("none")
    smtp = {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"}
    service = await _service(stepup_service_factory, {"smtp": smtp}, ("summary", Summary()))
    start = await _begin(service, "email-alice")
    match = APPROVE_LINE.search(server.messages[0].text())
    assert match is not None
    other = {**PAYMENT, "payee": "Mallory Ltd"}
    with pytest.raises(errors.TransactionMismatch):
        await service.verify(ALICE, VerifyRequest(method="otp", challenge_id=start.challenge_id,
                                                  response={"code": match.group(1)}, transaction=other))
    issued = await service.verify(ALICE, VerifyRequest(method="otp", challenge_id=start.challenge_id,
                                                       response={"code": match.group(1)}, transaction=PAYMENT))
    with pytest.raises(errors.TransactionMismatch):
        await service.require_scope(ALICE, "payments:send", issued.elevated_access_token, other)
    # The policy asks for details: an unbound code is never sent.
    with pytest.raises(errors.TransactionRequired):
        await service.begin(ALICE, ChallengeRequest(method="otp", credential_id="email-alice",
                                                    requested_scopes=("payments:send",)))
    assert len(server.messages) == 1


async def test_the_python_client_sends_and_verifies_a_bound_code(
    otp_world_factory: Any, smtp_server_factory: Any
) -> None:
    from stepup_core.testing.stack import StepUpStack

    server = smtp_server_factory("none")
    smtp = {"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example"}
    world = await otp_world_factory({"smtp": smtp})
    world.app.give("jane", "app-email", "jane@example.com")
    transfer = {"to": "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", "value": "1.5", "asset": "ETH"}
    async with StepUpStack.serve(world.service, users=(Principal("jane", "s-jane"),)) as stack:
        client = stack.client("jane")
        check = await client.check_step_up_auth("wallet:sign", transaction=transfer)
        assert check.transaction is not None
        summary = "Approve asset ETH, to 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23, value 1.5"
        assert check.transaction.summary == summary
        await client.send_otp(requested_scopes=["wallet:sign"], transaction=transfer)
        [mail] = server.messages
        line = mail.text().splitlines()[0]
        assert line.startswith(check.transaction.summary + ": code ")
        token = await client.verify_otp(line.rsplit(" ", 1)[1], transaction=dict(reversed(list(transfer.items()))))
        assert token is not None and token.transaction_hash == transaction_hash(transfer)
        assert not client.is_step_up_required("wallet:sign", transaction=transfer)
        assert client.is_step_up_required("wallet:sign")
        assert client.is_step_up_required("wallet:sign", transaction={**transfer, "value": "15"})
        assert not (await client.check_step_up_auth("wallet:sign", transaction=transfer)).is_required
