"""Transaction binding: canonical form and hash, the summary, the bound grant, the guard.

Each security test tries to use a bound token for something else (other details, another
user, another route, twice, a hundred times at once) and fails if it works.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stepup_core import errors, hookimpl
from stepup_core.config import load_config
from stepup_core.models import CredentialFormat, Factor
from stepup_core.server import grant_of, requires_scope, transaction_of
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token
from stepup_core.transaction import (
    MAX_SUMMARY_LENGTH,
    MAX_TRANSACTION_BYTES,
    canonical_form,
    clean_line,
    default_summary,
    hash_bytes,
    hash_uri,
    transaction_hash,
)

PIN = "2468"
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}

# --- canonical form and hash ----------------------------------------------------------------

# RFC 8785, section 3.2.2 (the sample input and its canonical form) and 3.2.3 (key sorting
# by UTF-16 code units).
RFC8785_INPUT = (
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
    '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'
)
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)
RFC8785_SORTING_INPUT = {
    "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
    "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis",
}
RFC8785_SORTED_KEYS = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_the_canonical_form_is_rfc_8785():
    assert canonical_form(json.loads(RFC8785_INPUT)) == RFC8785_OUTPUT.encode("utf-8")
    assert list(json.loads(canonical_form(RFC8785_SORTING_INPUT))) == RFC8785_SORTED_KEYS


def test_encodings_of_the_same_object_share_one_hash_and_any_change_gives_another():
    reordered = json.loads('{ "payee" : "ACME Ltd", "currency":"EUR",\n "amount": "120.00" }')
    assert transaction_hash(reordered) == transaction_hash(PAYMENT)
    assert transaction_hash({"amount": 120.0, "n": [1, 2]}) == transaction_hash({"n": [1.0, 2], "amount": 120})
    for changed in (
        {**PAYMENT, "amount": "120.01"},
        {**PAYMENT, "payee": "ACME Ltd."},
        {**PAYMENT, "currency": "eur"},
        {**PAYMENT, "memo": ""},
        {"amount": "120.00", "currency": "EUR"},
        {**PAYMENT, "amount": 120},
    ):
        assert transaction_hash(changed) != transaction_hash(PAYMENT), changed
    digest = transaction_hash(PAYMENT)
    assert len(digest) == 43 and "=" not in digest and len(hash_bytes(digest)) == 32
    assert hash_uri(digest) == f"ni:///sha-256;{digest}"


@pytest.mark.parametrize(
    ("details", "says"),
    [
        ([1, 2], "JSON object"),
        ("pay 120", "JSON object"),
        ({}, "at least one detail"),
        ({"amount": 2**60}, "beyond 2**53"),
        ({"amount": float("nan")}, "canonicalised"),
        ({"when": object()}, "canonicalised"),
        ({1: "x"}, "canonicalised"),
        ({"memo": "x" * MAX_TRANSACTION_BYTES}, "limit"),
    ],
)
def test_details_that_cannot_be_bound_are_refused_with_a_stable_code(details, says):
    with pytest.raises(errors.InvalidTransaction) as caught:
        transaction_hash(details)
    assert caught.value.code == "invalid_transaction" and caught.value.status == 422
    assert says in caught.value.message and caught.value.errors[0]["path"] == "transaction"


def test_the_default_summary_names_every_detail_on_one_clean_line():
    assert default_summary(PAYMENT) == "Approve amount 120.00, currency EUR, payee ACME Ltd"
    assert default_summary({"to": {"iban": "DE89"}, "n": 2}) == 'Approve n 2, to {"iban":"DE89"}'
    # A right-to-left override or a line break in a detail cannot rearrange what a person reads.
    assert default_summary({"payee": "ACME\u202e dtL\nEvil"}) == "Approve payee ACME dtL Evil"
    long = default_summary({"memo": "x" * 500})
    assert len(long) == MAX_SUMMARY_LENGTH and long.endswith("\u2026")
    assert clean_line("  a\u200b\tb\u2028c  ") == "a b c"


# --- a stack with a payment route -------------------------------------------------------------


def payment_details(body: dict[str, Any]) -> dict[str, Any]:
    """The application's builder: the details of the payment this request makes."""
    return {"amount": body["amount"], "currency": body["currency"], "payee": body["payee"]}


class Bank:
    """The application: ``POST /app/pay`` (bound), ``POST /app/pay-unbound`` (same scope, no
    details), ``POST /app/pay-small`` (exempt below 30), ``POST /app/profile`` (time-bound scope,
    bound); ``paid`` records every payment made."""

    def __init__(self) -> None:
        self.paid: list[dict[str, Any]] = []

    def install(self, app: web.Application) -> None:
        async def read_payment(request: web.Request) -> dict[str, Any]:
            return payment_details(await request.json())

        async def small_exempt(request: web.Request) -> dict[str, Any] | None:
            details = payment_details(await request.json())
            return None if float(details["amount"]) < 30 else details

        @requires_scope("payments:send", transaction=read_payment)
        async def pay(request: web.Request) -> web.Response:
            grant = grant_of(request)
            self.paid.append(transaction_of(request) or {})
            return web.json_response({"paid": transaction_of(request), "grant": grant and grant.transaction_hash})

        @requires_scope("payments:send")
        async def pay_unbound(request: web.Request) -> web.Response:
            self.paid.append({"unbound": True})
            return web.json_response({"paid": True})

        @requires_scope("payments:send", transaction=small_exempt)
        async def pay_small(request: web.Request) -> web.Response:
            self.paid.append(transaction_of(request) or {"exempt": True})
            return web.json_response({"paid": True})

        @requires_scope("user:update", transaction=lambda request: {"field": request.query.get("field", "")})
        async def profile(request: web.Request) -> web.Response:
            self.paid.append({"profile": request.query.get("field")})
            return web.json_response({"ok": True})

        app.router.add_post("/app/pay", pay)
        app.router.add_post("/app/pay-unbound", pay_unbound)
        app.router.add_post("/app/pay-small", pay_small)
        app.router.add_post("/app/profile", profile)


@pytest.fixture
def bank() -> Bank:
    return Bank()


@pytest.fixture
def methods() -> ThrowawayPlugin:
    return ThrowawayPlugin([
        PinVerifier(name="pin"),
        PinVerifier(name="code", requires_challenge=False, formats=(CredentialFormat.PHONE_NUMBER,)),
        PinVerifier(name="signer", factor=Factor.MFA, formats=(CredentialFormat.PASSKEY,), commits_transaction=True),
    ])


@pytest.fixture
def scope_config() -> dict[str, Any]:
    return {"payments:send": {"token_behavior": "time_bound"}}


@pytest.fixture
async def stack(bank: Bank, methods: ThrowawayPlugin, scope_config: dict[str, Any]) -> AsyncIterator[StepUpStack]:
    config = {"scopes": scope_config}
    async with StepUpStack.start(plugins=[methods], config=config, setup_app=bank.install) as stack:
        for user in ("alice", "bob"):
            status, body = await stack.api(user, "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
            assert status == 201, body
        yield stack


async def call(
    stack: StepUpStack, path: str, body: Any = None, *, user: str = "alice", token: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {session_token(user)}"}
    if token is not None:
        headers["X-Elevated-Access-Token"] = token
    if raw is not None:
        headers["Content-Type"] = "application/json"
    async with stack.http.post(stack.base_url + path, json=body if raw is None else None, data=raw,
                               headers=headers) as resp:
        assert resp.status < 500, await resp.text()
        return resp.status, await resp.json(content_type=None)


async def bound_token(
    stack: StepUpStack, details: Any = PAYMENT, *, user: str = "alice", scopes: tuple[str, ...] = ("payments:send",),
    method: str = "pin",
) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "requestedScopes": list(scopes)}
    if details is not None:
        body["transaction"] = details
    status, start = await stack.api(user, "POST", "/challenges", body)
    assert status == 201, start
    status, issued = await stack.api(user, "POST", "/verify",
                                     {"method": method, "challengeId": start["challengeId"], "response": {"code": PIN}})
    assert status == 200, issued
    return issued


def refusals(methods: ThrowawayPlugin) -> list[Any]:
    return [e for e in methods.of_type("grant_refused") if e.reason == "transaction_mismatch"]


# --- the bound grant ------------------------------------------------------------------------


async def test_a_bound_grant_is_single_use_whatever_the_policy_and_records_the_hash(
    stack: StepUpStack, bank: Bank, methods: ThrowawayPlugin
):
    issued = await bound_token(stack)
    assert issued["singleUse"] is True and issued["transactionHash"] == transaction_hash(PAYMENT)
    grant = (await stack.service.tokens.list_session("alice", "alice-session"))[0]
    assert grant.transaction_hash == transaction_hash(PAYMENT) and grant.single_use

    status, body = await call(stack, "/app/pay", PAYMENT, token=issued["elevatedAccessToken"])
    assert status == 200 and body == {"paid": PAYMENT, "grant": transaction_hash(PAYMENT)}
    status, body = await call(stack, "/app/pay", PAYMENT, token=issued["elevatedAccessToken"])
    assert status == 401 and body["code"] == "insufficient_user_authentication"
    assert bank.paid == [PAYMENT]
    used = methods.of_type("grant_used")[-1]
    assert used.details["transactionHash"] == transaction_hash(PAYMENT)

    # An unbound step-up for the same (time-bound) scope still gives a reusable token.
    unbound = await bound_token(stack, None)
    assert unbound["singleUse"] is False and unbound["transactionHash"] is None


@pytest.mark.parametrize(
    ("presented", "what"),
    [
        ({**PAYMENT, "amount": "1200.00"}, "changed amount"),
        ({**PAYMENT, "payee": "Mallory Ltd"}, "changed payee"),
        ({**PAYMENT, "currency": "USD"}, "changed currency"),
    ],
)
async def test_a_bound_token_with_other_details_is_refused_audited_and_not_consumed(
    stack: StepUpStack, bank: Bank, methods: ThrowawayPlugin, presented: dict[str, Any], what: str
):
    token = (await bound_token(stack))["elevatedAccessToken"]
    status, body = await call(stack, "/app/pay", presented, token=token)
    assert status == 403, what
    assert body["code"] == "transaction_mismatch" and body["scope"] == "payments:send"
    # The refusal names the details this request needs, with their summary, to step up again.
    assert body["transaction"]["hash"] == transaction_hash(presented)
    assert body["transaction"]["details"] == presented
    assert bank.paid == []
    [event] = refusals(methods)
    assert event.outcome == "failure" and event.user_id == "alice" and event.scopes == ("payments:send",)
    assert event.details == {
        "refusal": "transaction_mismatch", "tokenId": stack.service.tokens.id_of(token),
        "transactionHash": transaction_hash(presented), "grantTransactionHash": transaction_hash(PAYMENT),
    }
    # Not consumed: the payment the person approved still goes through, once.
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200 and bank.paid == [PAYMENT]


async def test_reordered_keys_and_other_spacing_are_the_same_details(stack: StepUpStack, bank: Bank):
    token = (await bound_token(stack, {"payee": "ACME Ltd", "amount": "120.00", "currency": "EUR"}))
    raw = b'{\n  "currency" : "EUR",  "payee":"ACME Ltd",\t"amount":"120.00"}'
    status, body = await call(stack, "/app/pay", token=token["elevatedAccessToken"], raw=raw)
    assert status == 200, body
    assert bank.paid == [PAYMENT]


async def test_another_user_cannot_use_a_bound_token_and_does_not_burn_it(stack: StepUpStack, bank: Bank):
    token = (await bound_token(stack))["elevatedAccessToken"]
    status, body = await call(stack, "/app/pay", PAYMENT, user="bob", token=token)
    assert status == 401 and body["code"] == "insufficient_user_authentication"
    assert bank.paid == []
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200


async def test_a_bound_token_opens_no_route_that_states_no_details(
    stack: StepUpStack, bank: Bank, methods: ThrowawayPlugin
):
    token = (await bound_token(stack))["elevatedAccessToken"]
    status, body = await call(stack, "/app/pay-unbound", PAYMENT, token=token)
    assert status == 403 and body["code"] == "transaction_mismatch" and "transaction" not in body
    details = refusals(methods)[0].details
    assert (details["transactionHash"], details["grantTransactionHash"]) == (None, transaction_hash(PAYMENT))
    assert details["tokenId"] == stack.service.tokens.id_of(token) and token not in str(details)
    # A bound credential token is no credential operation's token either.
    cred = (await stack.service.list_credentials(stack.principal("alice")))[0].id
    unlink = (await bound_token(stack, {"credential": cred}, scopes=("credential:unlink",)))["elevatedAccessToken"]
    status, body = await stack.api("alice", "DELETE", f"/credentials/{cred}", token=unlink)
    assert status == 403 and body["code"] == "transaction_mismatch"
    assert len(await stack.service.list_credentials(stack.principal("alice"))) == 1
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200 and bank.paid == [PAYMENT]


async def test_an_unbound_token_is_no_token_for_a_bound_route_and_the_refusal_carries_the_details(
    stack: StepUpStack, bank: Bank
):
    unbound = await bound_token(stack, None)
    for token in (None, unbound["elevatedAccessToken"]):
        status, body = await call(stack, "/app/pay", PAYMENT, token=token)
        assert status == 401 and body["code"] == "insufficient_user_authentication"
        assert body["check"]["transaction"] == {
            "hash": transaction_hash(PAYMENT),
            "summary": "Approve amount 120.00, currency EUR, payee ACME Ltd",
            "details": PAYMENT,
        }
    assert bank.paid == []
    # The unbound token was not used up: it still opens the route that states no details.
    status, _ = await call(stack, "/app/pay-unbound", PAYMENT, token=unbound["elevatedAccessToken"])
    assert status == 200
    # The details from the refusal step up to a token the route accepts.
    issued = await bound_token(stack, body["check"]["transaction"]["details"])
    status, _ = await call(stack, "/app/pay", PAYMENT, token=issued["elevatedAccessToken"])
    assert status == 200


async def test_a_hundred_concurrent_presentations_use_a_bound_token_once(stack: StepUpStack, bank: Bank):
    token = (await bound_token(stack))["elevatedAccessToken"]
    wrong = {**PAYMENT, "amount": "9999.00"}
    # Fifty at once with other details: all refused, none uses the token up.
    results = await asyncio.gather(*(call(stack, "/app/pay", wrong, token=token) for _ in range(50)))
    assert [status for status, _ in results] == [403] * 50
    # A hundred at once with the details: one payment.
    results = await asyncio.gather(*(call(stack, "/app/pay", PAYMENT, token=token) for _ in range(100)))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 1 and statuses.count(401) == 99, statuses
    assert bank.paid == [PAYMENT]
    # Mixed, with a fresh token: still one payment, and only the details it was bound to.
    token = (await bound_token(stack))["elevatedAccessToken"]
    results = await asyncio.gather(
        *(call(stack, "/app/pay", PAYMENT if i % 2 else wrong, token=token) for i in range(100))
    )
    assert [s for s, _ in results].count(200) == 1
    assert all(s == 401 or (s == 403 and i % 2 == 0) for i, (s, _) in enumerate(results) if s != 200)
    assert bank.paid == [PAYMENT, PAYMENT]


async def test_a_bound_time_bound_scope_is_single_use_too(stack: StepUpStack, bank: Bank):
    issued = await bound_token(stack, {"field": "email"}, scopes=("user:update",))
    assert issued["singleUse"] is True
    token = issued["elevatedAccessToken"]
    async with stack.http.post(f"{stack.base_url}/app/profile?field=phone", headers=stack.headers("alice", token)) as r:
        assert r.status == 403
    async with stack.http.post(f"{stack.base_url}/app/profile?field=email", headers=stack.headers("alice", token)) as r:
        assert r.status == 200
    async with stack.http.post(f"{stack.base_url}/app/profile?field=email", headers=stack.headers("alice", token)) as r:
        assert r.status == 401


async def test_a_builder_that_cannot_read_the_request_refuses_it(stack: StepUpStack, bank: Bank):
    token = (await bound_token(stack))["elevatedAccessToken"]
    for body in ({"amount": "120.00"}, [1, 2]):
        status, problem = await call(stack, "/app/pay", body, token=token)
        assert status == 422 and problem["code"] == "invalid_transaction", problem
    status, problem = await call(stack, "/app/pay", {**PAYMENT, "amount": 2**60}, token=token)
    assert status == 422 and problem["code"] == "invalid_transaction" and "2**53" in problem["detail"]
    assert bank.paid == []
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200


async def test_a_builder_may_exempt_a_request_from_binding(stack: StepUpStack, bank: Bank):
    unbound = await bound_token(stack, None)
    small = {**PAYMENT, "amount": "12.00"}
    status, _ = await call(stack, "/app/pay-small", small, token=unbound["elevatedAccessToken"])
    assert status == 200
    status, body = await call(stack, "/app/pay-small", PAYMENT, token=unbound["elevatedAccessToken"])
    assert status == 401 and body["check"]["transaction"]["details"] == PAYMENT
    assert bank.paid == [{"exempt": True}]


# --- challenges and verification ----------------------------------------------------------------


async def test_verification_keeps_to_the_details_the_challenge_was_issued_for(stack: StepUpStack):
    status, start = await stack.api("alice", "POST", "/challenges",
                                    {"method": "pin", "requestedScopes": ["payments:send"], "transaction": PAYMENT})
    assert status == 201
    assert start["transaction"] == {"hash": transaction_hash(PAYMENT),
                                    "summary": "Approve amount 120.00, currency EUR, payee ACME Ltd",
                                    "details": PAYMENT}
    other = {**PAYMENT, "payee": "Mallory"}
    status, body = await stack.api("alice", "POST", "/verify", {
        "method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN}, "transaction": other})
    assert status == 403 and body["code"] == "transaction_mismatch"
    # The same details in another order are the same details.
    status, issued = await stack.api("alice", "POST", "/verify", {
        "method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN},
        "transaction": dict(reversed(list(PAYMENT.items())))})
    assert status == 200 and issued["transactionHash"] == transaction_hash(PAYMENT)

    # Details cannot be added to a challenge issued without.
    status, plain = await stack.api("alice", "POST", "/challenges",
                                    {"method": "pin", "requestedScopes": ["payments:send"]})
    status, body = await stack.api("alice", "POST", "/verify", {
        "method": "pin", "challengeId": plain["challengeId"], "response": {"code": PIN}, "transaction": PAYMENT})
    assert status == 403 and body["code"] == "transaction_mismatch"


async def test_a_method_without_challenge_binds_the_details_sent_with_the_verification(
    stack: StepUpStack, bank: Bank
):
    # Linking a credential needs an unbound credential:link token: a bound one is refused.
    bound_link = (await bound_token(stack, {"device": "phone"}, scopes=("credential:link",)))["elevatedAccessToken"]
    status, body = await stack.api("alice", "POST", "/enrollments", {"method": "code", "params": {"pin": PIN}},
                                   token=bound_link)
    assert status == 403 and body["code"] == "transaction_mismatch"
    link = (await bound_token(stack, None, scopes=("credential:link",)))["elevatedAccessToken"]
    status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "code", "params": {"pin": PIN}}, token=link)
    assert status == 201

    status, issued = await stack.api("alice", "POST", "/verify", {
        "method": "code", "response": {"code": PIN}, "requestedScopes": ["payments:send"], "transaction": PAYMENT})
    assert status == 200 and issued["transactionHash"] == transaction_hash(PAYMENT) and issued["singleUse"]
    token = issued["elevatedAccessToken"]
    status, _ = await call(stack, "/app/pay", {**PAYMENT, "amount": "1.00"}, token=token)
    assert status == 403
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200 and bank.paid == [PAYMENT]


@pytest.mark.parametrize(
    ("details", "path"),
    [([PAYMENT], "transaction"), ({}, "transaction"), ({"amount": 2**60}, "transaction"), ("x", "transaction")],
)
async def test_invalid_details_are_refused_when_a_challenge_begins(stack: StepUpStack, details: Any, path: str):
    status, body = await stack.api("alice", "POST", "/challenges",
                                   {"method": "pin", "requestedScopes": ["payments:send"], "transaction": details})
    assert status == 422 and body["code"] in ("invalid_transaction", "validation_error"), body
    assert any(e["path"].startswith(path) for e in body["errors"]), body


async def test_check_is_satisfied_only_by_a_token_bound_to_the_same_details(stack: StepUpStack):
    token = (await bound_token(stack))["elevatedAccessToken"]
    status, check = await stack.api("alice", "POST", "/check", {"scope": "payments:send", "transaction": PAYMENT},
                                    token=token)
    assert status == 200 and check["isRequired"] is False
    assert check["transaction"]["hash"] == transaction_hash(PAYMENT)
    status, check = await stack.api("alice", "POST", "/check",
                                    {"scope": "payments:send", "transaction": {**PAYMENT, "amount": "1"}}, token=token)
    assert check["isRequired"] is True
    status, check = await stack.api("alice", "POST", "/check", {"scope": "payments:send"}, token=token)
    assert check["isRequired"] is True and check["transaction"] is None
    # The check consumed nothing.
    status, _ = await call(stack, "/app/pay", PAYMENT, token=token)
    assert status == 200


# --- policies and /methods --------------------------------------------------------------------


async def test_methods_say_which_commit(stack: StepUpStack):
    _, methods = await stack.api("alice", "GET", "/methods")
    assert {m["name"]: m["commitsTransaction"] for m in methods} == {"pin": False, "code": False, "signer": True}


@pytest.mark.parametrize(
    "scope_config",
    [{"payments:send": {"transaction_required": True, "committing_method_required": True}}],
)
async def test_a_policy_can_require_details_and_a_committing_method(stack: StepUpStack, methods: ThrowawayPlugin):
    status, body = await stack.api("alice", "POST", "/challenges",
                                   {"method": "pin", "requestedScopes": ["payments:send"]})
    assert status == 422 and body["code"] == "transaction_required" and body["errors"][0]["path"] == "transaction"
    status, body = await stack.api("alice", "POST", "/challenges",
                                   {"method": "pin", "requestedScopes": ["payments:send"], "transaction": PAYMENT})
    assert status == 403 and body["code"] == "committing_method_required" and body["method"] == "pin"
    # Other scopes are not bound by this policy.
    status, _ = await stack.api("alice", "POST", "/challenges",
                                {"method": "pin", "requestedScopes": ["user:update"], "transaction": PAYMENT})
    assert status == 201
    # The check offers only the methods that commit.
    status, check = await stack.api("alice", "POST", "/check", {"scope": "payments:send", "transaction": PAYMENT})
    assert check["methods"] == [] and check["credentials"] == []
    link_token = await bound_token(stack, None, scopes=("credential:link",))
    status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "signer", "params": {"pin": "1357"}},
                                token=link_token["elevatedAccessToken"])
    assert status == 201
    status, check = await stack.api("alice", "POST", "/check", {"scope": "payments:send", "transaction": PAYMENT})
    assert check["methods"] == ["signer"]
    status, start = await stack.api("alice", "POST", "/challenges",
                                    {"method": "signer", "requestedScopes": ["payments:send"], "transaction": PAYMENT})
    assert status == 201
    status, issued = await stack.api("alice", "POST", "/verify", {
        "method": "signer", "challengeId": start["challengeId"], "response": {"code": "1357"}})
    assert status == 200 and issued["transactionHash"] == transaction_hash(PAYMENT)


# --- the summary hook ---------------------------------------------------------------------------


class Summaries:
    def __init__(self, answer: Any = "auto") -> None:
        self.answer = answer
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    @hookimpl
    def stepup_transaction_summary(self, scopes: tuple[str, ...], transaction: dict[str, Any]) -> Any:
        self.calls.append((scopes, transaction))
        if self.answer != "auto":
            return self.answer
        if "payments:send" in scopes:
            return f"Approve {transaction['amount']} {transaction['currency']} to {transaction['payee']}"
        return None


async def test_hook_stepup_transaction_summary(stack: StepUpStack):
    summaries = Summaries()
    stack.pm.register(summaries, name="summaries")
    try:
        status, start = await stack.api("alice", "POST", "/challenges", {
            "method": "pin", "requestedScopes": ["payments:send"],
            "transaction": {"payee": "ACME Ltd", "currency": "EUR", "amount": "120.00"}})
        assert status == 201 and start["transaction"]["summary"] == "Approve 120.00 EUR to ACME Ltd"
        # The hook sees the scopes and the details in canonical key order.
        assert summaries.calls == [(("payments:send",), PAYMENT)]
        assert list(summaries.calls[0][1]) == ["amount", "currency", "payee"]
        # Another scope: the hook abstains and every detail is named.
        status, start = await stack.api("alice", "POST", "/challenges",
                                        {"method": "pin", "requestedScopes": ["user:update"], "transaction": PAYMENT})
        assert start["transaction"]["summary"] == "Approve amount 120.00, currency EUR, payee ACME Ltd"
        # The summary is cleaned; an unusable one is the plugin's error, and no challenge starts.
        summaries.answer = "Approve\u202e 120 EUR\n"
        status, start = await stack.api("alice", "POST", "/challenges",
                                        {"method": "pin", "requestedScopes": ["payments:send"], "transaction": PAYMENT})
        assert start["transaction"]["summary"] == "Approve 120 EUR"
        for bad in ("x" * (MAX_SUMMARY_LENGTH + 1), " \u200b ", 42):
            summaries.answer = bad
            status, body = await stack.api("alice", "POST", "/challenges", {
                "method": "pin", "requestedScopes": ["payments:send"], "transaction": PAYMENT})
            assert status == 500 and body["code"] == "plugin_error", bad
    finally:
        stack.pm.unregister(name="summaries")


@pytest.mark.parametrize("number", [9007199254740992.0, -6.9001674501199710e16, 1e21, 2**53 - 1, 0.1])
def test_details_read_back_from_their_canonical_form_hash_the_same(number):
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.transaction import bind

    details = {"n": [number], "m": {"k": number}}
    bound = bind(get_plugin_manager(load_entrypoints=False), ("payments:send",), details)
    assert transaction_hash(bound.details) == bound.hash == transaction_hash(details)
    assert bound.summary.startswith('Approve m {"k":')


# --- the documentation -------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_documented_hash_summary_and_configuration_are_what_the_code_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (DOCS / "transaction-binding.md").read_text(encoding="utf-8")
    details = {"payee": "ACME Ltd", "amount": "120.00", "currency": "EUR", "reference": "INV-2041"}
    digest = transaction_hash(details)
    assert f"canonical  {canonical_form(details).decode()}" in page
    assert f"hash       {digest}" in page and f"ni URI     {hash_uri(digest)}" in page
    assert f"`{default_summary(details)}`" in page
    assert page.count(digest) >= 5
    mismatch = {**details, "payee": "Mallory Ltd"}
    assert transaction_hash(mismatch) in page

    [example] = re.findall(r"```toml\n(.*?)```", (DOCS / "configuration.md").read_text(encoding="utf-8"), re.S)
    monkeypatch.setenv("STEPUP_SECRET_KEY", "ab" * 32)
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    file = tmp_path / "stepup.toml"
    file.write_text(example, encoding="utf-8")
    policy = load_config(file).scope_policies().policy_for("payments:send")
    assert policy.transaction_required and policy.committing_method_required
