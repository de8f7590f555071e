"""The Python client with transaction binding, against the real server on loopback: the person is
told what they approve, bound tokens are kept per transaction and attached only to the request
with the same details, and an automatic step-up binds to the details the refusal names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from stepup_core.client import ScriptedPrompter
from stepup_core.models import CredentialFormat, Factor
from stepup_core.server import requires_scope, transaction_of
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack
from stepup_core.transaction import transaction_hash

PIN = "2468"
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}
SUMMARY = "Approve amount 120.00, currency EUR, payee ACME Ltd"


def install(paid: list[Any]) -> Any:
    def setup(app: web.Application) -> None:
        async def details(request: web.Request) -> dict[str, Any]:
            body = await request.json()
            return {key: body[key] for key in ("amount", "currency", "payee")}

        @requires_scope("payments:send", transaction=details)
        async def pay(request: web.Request) -> web.Response:
            paid.append(transaction_of(request))
            return web.json_response({"paid": True})

        @requires_scope("payments:send")
        async def standing_order(request: web.Request) -> web.Response:
            paid.append("standing order")
            return web.json_response({"ok": True})

        app.router.add_post("/app/pay", pay)
        app.router.add_post("/app/standing-order", standing_order)

    return setup


@pytest.fixture
def paid() -> list[Any]:
    return []


@pytest.fixture
async def stack(paid: list[Any]) -> AsyncIterator[StepUpStack]:
    methods = ThrowawayPlugin([
        PinVerifier(name="pin", factor=Factor.MFA, sign_in=False),
        PinVerifier(name="code", factor=Factor.MFA, requires_challenge=False,
                    formats=(CredentialFormat.TOTP,), fallback=True),
    ])
    config = {"scopes": {"payments:send": {"token_behavior": "time_bound"}}}
    async with StepUpStack.start(plugins=[methods], config=config, setup_app=install(paid)) as stack:
        status, body = await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        assert status == 201, body
        yield stack


async def test_a_prompt_bound_to_a_payment_tells_the_person_and_opens_only_that_payment(
    stack: StepUpStack, paid: list[Any]
) -> None:
    prompter = ScriptedPrompter(codes=[PIN])
    client = stack.client("alice", prompter=prompter)
    check = await client.check_step_up_auth("payments:send", transaction=PAYMENT)
    assert check.is_required and check.transaction is not None and check.transaction.summary == SUMMARY

    token = await client.prompt_step_up_auth("payments:send", transaction=PAYMENT)
    assert token is not None and token.transaction_hash == transaction_hash(PAYMENT) and token.single_use
    assert prompter.told == [f"You are approving: {SUMMARY}"]
    assert not client.is_step_up_required("payments:send", transaction=PAYMENT)
    assert client.is_step_up_required("payments:send")

    # The bound token goes with the request for the same details only.
    other = {**PAYMENT, "payee": "Mallory Ltd"}
    refused = await client.post("/app/pay", scope="payments:send", transaction=other, json=other)
    assert refused.status == 401 and refused.token_sent is None
    unbound_route = await client.post("/app/standing-order", scope="payments:send")
    assert unbound_route.status == 401 and unbound_route.token_sent is None
    done = await client.post("/app/pay", scope="payments:send", transaction=PAYMENT, json=PAYMENT)
    assert done.status == 200 and done.token_sent == token.elevated_access_token
    assert paid == [PAYMENT]
    assert client.is_step_up_required("payments:send", transaction=PAYMENT)  # used up, left the jar


async def test_a_bound_token_sent_with_other_details_is_refused_and_not_retried(
    stack: StepUpStack, paid: list[Any]
) -> None:
    client = stack.client("alice", prompter=ScriptedPrompter(codes=[PIN]), auto_step_up=True)
    token = await client.prompt_step_up_auth("payments:send", transaction=PAYMENT)
    assert token is not None
    tampered = {**PAYMENT, "amount": "1200.00"}
    # The page names one payment, the body carries another: the server builds the details from
    # the body, refuses the token (403) and spends nothing; the client does not step up again.
    answer = await client.post("/app/pay", scope="payments:send", transaction=PAYMENT, json=tampered)
    assert answer.status == 403
    problem = answer.problem()
    assert problem is not None and problem.code == "transaction_mismatch"
    assert paid == []
    # Not spent: the client holds it again, and it still satisfies the check for its payment.
    assert not client.is_step_up_required("payments:send", transaction=PAYMENT)
    status, check = await stack.api("alice", "POST", "/check", {"scope": "payments:send", "transaction": PAYMENT},
                                    token=token.elevated_access_token)
    assert status == 200 and check["isRequired"] is False
    done = await client.post("/app/pay", scope="payments:send", transaction=PAYMENT, json=PAYMENT)
    assert done.status == 200 and done.token_sent == token.elevated_access_token and paid == [PAYMENT]


async def test_auto_step_up_binds_to_the_details_the_refusal_names(stack: StepUpStack, paid: list[Any]) -> None:
    prompter = ScriptedPrompter(codes=[PIN])
    client = stack.client("alice", prompter=prompter, auto_step_up=True)
    # The client names no details: the server's refusal carries them, the person is told them,
    # and the retry carries the token bound to them.
    answer = await client.post("/app/pay", scope="payments:send", json=PAYMENT)
    assert answer.status == 200, answer.text
    assert prompter.told == [f"You are approving: {SUMMARY}"]
    assert paid == [PAYMENT]
    assert client.jar.tokens() == []


async def test_a_code_method_without_challenge_binds_and_is_told_the_check_summary(
    stack: StepUpStack, paid: list[Any]
) -> None:
    link = await stack.service.tokens.mint(stack.principal("alice"), ["credential:link"], method="pin", ttl=60,
                                           single_use=True)
    status, body = await stack.api("alice", "POST", "/enrollments", {"method": "code", "params": {"pin": "8642"}},
                                   token=link.elevated_access_token)
    assert status == 201, body
    prompter = ScriptedPrompter()
    client = stack.client("alice", prompter=prompter)
    token = await client.step_up("code", requested_scopes=["payments:send"], transaction=PAYMENT, code="8642")
    assert token.transaction_hash == transaction_hash(PAYMENT)
    assert prompter.told == [f"You are approving: {SUMMARY}"]
    other = await client.step_up("code", requested_scopes=["payments:send"], code="8642")
    assert other.transaction_hash is None
    assert len(client.jar.tokens()) == 2
    assert (await client.post("/app/pay", scope="payments:send", transaction=PAYMENT, json=PAYMENT)).status == 200
    assert (await client.post("/app/standing-order", scope="payments:send")).status == 200
    assert paid == [PAYMENT, "standing order"]
