"""Transaction binding meets the backends: signed grants, RFC 9470 sign-ins, the sidecar.

A bound grant is always checked by the server and spent once: a scope policy that issues signed
JWT grants issues an opaque single-use token for a bound step-up, a fresh sign-in never stands
for a bound action, and ``POST /introspect`` takes the action's details and refuses a token bound
to other details (``active: false``, the guard's 403 as the challenge) without spending it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stepup_core import hookimpl
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError, StepUpRequired
from stepup_core.models import AuditEvent, Principal
from stepup_core.remote import RemoteGuard
from stepup_core.server.openapi import build_document
from stepup_core.service import StepUpService
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import SERVICE_CREDENTIAL, StepUpStack
from stepup_core.tokens import TokenStore
from stepup_core.transaction import transaction_hash

PIN = "2468"
ALICE = Principal("alice", "alice-session")
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}
CHANGED = {**PAYMENT, "amount": "1200.00"}


class Recorder:
    """Keeps the audit events (a ``stepup_event`` implementation)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def stepup_event(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def stack(clock: ManualClock, recorder: Recorder) -> AsyncIterator[StepUpStack]:
    config = {
        "scopes": {
            "user:update": {"signed": True},  # time-bound, issued as JWTs
            "payments:send": {"token_behavior": "time_bound", "signed": True},
            "app:read": {"required": False},
        },
        "grants": {"issuer": "https://auth.example/stepup"},
    }
    plugins = [ThrowawayPlugin([PinVerifier(name="pin")]), recorder]
    async with StepUpStack.start(plugins=plugins, config=config, clock=clock) as stack:
        status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        assert status == 201
        yield stack


async def step_up(stack: StepUpStack, scope: str, transaction: Any = None) -> dict[str, Any]:
    begin: dict[str, Any] = {"method": "pin", "requestedScopes": [scope]}
    if transaction is not None:
        begin["transaction"] = transaction
    status, begun = await stack.api("alice", "POST", "/challenges", begin)
    assert status == 201, begun
    status, issued = await stack.api(
        "alice", "POST", "/verify", {"method": "pin", "challengeId": begun["challengeId"], "response": {"code": PIN}}
    )
    assert status == 200, issued
    return dict(issued)


async def introspect(stack: StepUpStack, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {SERVICE_CREDENTIAL}"}
    async with stack.http.post(stack.base_url + "/stepup/introspect", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def asking(token: str | None, transaction: Any = None, *, consume: bool = True, scope: str = "payments:send") -> dict:
    body: dict[str, Any] = {"token": token, "scope": scope, "sub": "alice", "sid": "alice-session", "consume": consume}
    if transaction is not None:
        body["transaction"] = transaction
    return body


# --- signed grants -------------------------------------------------------------------------------


async def test_a_signed_scope_issues_an_opaque_single_use_token_for_a_bound_step_up(stack: StepUpStack) -> None:
    unbound = await step_up(stack, "payments:send")
    assert unbound["elevatedAccessToken"].count(".") == 2  # the policy's JWT
    assert unbound["singleUse"] is False and unbound.get("transactionHash") is None

    bound = await step_up(stack, "payments:send", PAYMENT)
    token = bound["elevatedAccessToken"]
    assert token.startswith("sut_") and "." not in token  # never a JWT: only the server can spend it
    assert bound["singleUse"] is True
    assert bound["transactionHash"] == transaction_hash(PAYMENT)
    # Checked and spent by the server: once.
    status, first = await introspect(stack, asking(token, PAYMENT))
    assert (status, first["allow"], first["consumed"]) == (200, True, True)
    status, second = await introspect(stack, asking(token, PAYMENT))
    assert (status, second["allow"], second["active"]) == (200, False, False)


async def test_the_token_store_never_signs_a_bound_grant() -> None:
    from stepup_core.store.memory import MemoryStore

    clock = ManualClock()
    tokens = TokenStore(MemoryStore(clock=clock), clock)
    signed: list[dict[str, Any]] = []

    async def signer(claims: dict[str, Any]) -> tuple[str, str]:
        signed.append(claims)
        return "a.b.c", "kid"

    with pytest.raises(ValueError, match="never signed"):
        await tokens.mint(
            ALICE, ["payments:send"], method="pin", ttl=300, single_use=False, signer=signer,
            transaction_hash=transaction_hash(PAYMENT),
        )
    assert signed == []


def test_signed_with_transaction_required_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="cannot be bound to transaction details"):
        config_from_mapping({"scopes": {"payments:send": {"signed": True, "transaction_required": True}}})


# --- RFC 9470 sign-ins ---------------------------------------------------------------------------


async def test_a_fresh_sign_in_never_stands_for_a_bound_action(clock: ManualClock) -> None:
    from stepup_core.plugins import get_plugin_manager

    config = config_from_mapping({
        "store": "memory:",
        "acr": {"phr": ["pin"]},
        "scopes": {"payments:send": {"acr_values": ["phr"], "max_age": 60, "accept_sign_in": True}},
    })
    service = await StepUpService.create(config, pm=get_plugin_manager(load_entrypoints=False), clock=clock)
    try:
        signed_in = Principal("alice", "alice-s1", acr="phr", amr=("hwk",), auth_time=clock.now() - 5)
        # The person never saw these details: the sign-in cannot approve them.
        check = await service.check(signed_in, "payments:send", None, PAYMENT)
        assert check.is_required is True and check.transaction is not None
        with pytest.raises(StepUpRequired) as refused:
            await service.require_scope(signed_in, "payments:send", None, PAYMENT)
        assert refused.value.check["transaction"]["hash"] == transaction_hash(PAYMENT)
        # The same sign-in does stand for the unbound action (and, single-use here, once).
        assert (await service.check(signed_in, "payments:send")).is_required is False
        grant = await service.require_scope(signed_in, "payments:send", None)
        assert grant is not None and grant.method == "sign-in"
    finally:
        await service.close()


# --- the sidecar ---------------------------------------------------------------------------------


async def test_introspection_refuses_other_details_without_spending_the_token(
    stack: StepUpStack, recorder: Recorder
) -> None:
    token = (await step_up(stack, "payments:send", PAYMENT))["elevatedAccessToken"]
    for consume in (True, False):
        for details in (CHANGED, None):  # other details, or none at all
            status, body = await introspect(stack, asking(token, details, consume=consume))
            assert status == 200
            assert body["active"] is False and body["allow"] is False and body["consumed"] is False
            assert body.get("scope") is None and body.get("sub") is None  # RFC 7662: no more about it
            challenge = body["challenge"]
            assert challenge["status"] == 403
            problem = json.loads(challenge["body"])
            assert problem["code"] == "transaction_mismatch"
            if details is not None:
                assert problem["transaction"]["hash"] == transaction_hash(CHANGED)
    refused = [e for e in recorder.events if e.type == "grant_refused" and e.reason == "transaction_mismatch"]
    assert len(refused) == 4
    assert refused[0].details["grantTransactionHash"] == transaction_hash(PAYMENT)
    # Keys in another order: the same canonical details; looked at, then spent once.
    reordered = dict(reversed(list(PAYMENT.items())))
    status, seen = await introspect(stack, asking(token, reordered, consume=False))
    assert (seen["active"], seen["allow"], seen["consumed"]) == (True, True, False)
    assert seen["transactionHash"] == transaction_hash(PAYMENT)
    status, spent = await introspect(stack, asking(token, reordered))
    assert (spent["active"], spent["allow"], spent["consumed"]) == (True, True, True)
    status, again = await introspect(stack, asking(token, PAYMENT))
    assert again["allow"] is False and again["challenge"]["status"] == 401
    assert json.loads(again["challenge"]["body"])["check"]["transaction"]["details"] == PAYMENT


async def test_introspection_of_an_unbound_token_for_a_bound_action_is_the_guards_401(stack: StepUpStack) -> None:
    token = (await step_up(stack, "user:update"))["elevatedAccessToken"]  # a signed, unbound grant
    status, body = await introspect(stack, asking(token, PAYMENT, scope="user:update"))
    assert status == 200 and body["allow"] is False and body["challenge"]["status"] == 401
    assert json.loads(body["challenge"]["body"])["check"]["transaction"]["details"] == PAYMENT
    # Not spent: the unbound action still goes through with it.
    status, body = await introspect(stack, asking(token, scope="user:update"))
    assert body["allow"] is True and body["active"] is True


async def test_introspection_answers_undecodable_details_as_the_guard_does(stack: StepUpStack) -> None:
    token = (await step_up(stack, "payments:send", PAYMENT))["elevatedAccessToken"]
    status, body = await introspect(stack, asking(token, {"amount": 2**60}))
    assert status == 200 and body["allow"] is False
    assert body["challenge"]["status"] == 422
    assert json.loads(body["challenge"]["body"])["code"] == "invalid_transaction"
    # Only the details themselves: a hash is not accepted in their place.
    request = asking(token) | {"transactionHash": transaction_hash(PAYMENT)}
    status, body = await introspect(stack, request)
    assert status == 422 and body["code"] == "validation_error"
    status, body = await introspect(stack, asking(token, PAYMENT))
    assert body["allow"] is True and body["consumed"] is True  # none of it spent the token


async def test_a_scope_without_step_up_lets_any_details_through(stack: StepUpStack) -> None:
    status, body = await introspect(stack, asking(None, PAYMENT, scope="app:read"))
    assert (status, body["allow"], body["active"]) == (200, True, False)


async def test_remote_guard_refuses_details_json_cannot_carry_itself(stack: StepUpStack) -> None:
    gate = RemoteGuard(stack.base_url + "/stepup", SERVICE_CREDENTIAL)
    try:
        answer = await gate.decide("payments:send", ALICE, None, where="/pay", transaction={"amount": math.nan})
        assert not hasattr(answer, "grant")
        assert answer.status == 422 and answer.json()["code"] == "invalid_transaction"
    finally:
        await gate.close()


def test_the_openapi_document_describes_the_introspection_binding() -> None:
    schemas = build_document("/stepup")["components"]["schemas"]
    request = schemas["IntrospectionRequest"]["properties"]
    assert request["transaction"] == {"anyOf": [{"$ref": "#/components/schemas/TransactionDetails"}, {"type": "null"}]}
    assert "transactionHash" in schemas["Introspection"]["properties"]
