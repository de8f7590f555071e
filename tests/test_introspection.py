"""``POST /stepup/introspect``: RFC 7662 for applications beside the server. Only a configured
service credential may call it (never a user's session); the answer says whether the token is
active for the scope, user and session, spends a single-use token atomically when asked, and
hands back the exact refusal a guard sends. Every answer is checked against the OpenAPI
document."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError
from stepup_core.introspection import credential_hash, new_service_credential
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.remote import RemoteGuard
from stepup_core.service import StepUpService
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import SERVICE_CREDENTIAL, StepUpStack
from stepup_core.testing.stores import SwitchableStore

PIN = "2468"
ALICE = Principal("alice", "alice-session")


@pytest.fixture
def methods() -> ThrowawayPlugin:
    return ThrowawayPlugin([PinVerifier(name="pin")])


@pytest.fixture
def switch(clock: ManualClock) -> SwitchableStore:
    return SwitchableStore(MemoryStore(clock=clock))


@pytest.fixture
async def stack(methods: ThrowawayPlugin, clock: ManualClock, switch: SwitchableStore) -> AsyncIterator[StepUpStack]:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(methods, name="test-methods")
    config = config_from_mapping({
        "store": "memory:",
        "secret_key": secrets.token_hex(32),
        "introspection": {"clients": {"billing": credential_hash(SERVICE_CREDENTIAL)}},
        "scopes": {"app:read": {"required": False}, "user:update": {"signed": True}},
    })
    service = await StepUpService.create(config, pm=pm, clock=clock, store=switch)  # type: ignore[arg-type]
    try:
        async with StepUpStack.serve(service) as stack:
            status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
            assert status == 201
            yield stack
    finally:
        await service.close()


async def step_up(stack: StepUpStack, scope: str, user: str = "alice") -> dict[str, Any]:
    status, begun = await stack.api(user, "POST", "/challenges", {"method": "pin", "requestedScopes": [scope]})
    assert status == 201, begun
    status, issued = await stack.api(
        user, "POST", "/verify", {"method": "pin", "challengeId": begun["challengeId"], "response": {"code": PIN}}
    )
    assert status == 200, issued
    return dict(issued)


async def introspect(
    stack: StepUpStack, body: dict[str, Any], *, credential: str | None = SERVICE_CREDENTIAL,
    authorization: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": authorization or f"Bearer {credential}"} if (credential or authorization) else {}
    url = stack.base_url + "/stepup/introspect"
    async with stack.http.post(url, json=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def request(token: str | None, scope: str = "wallet:export", consume: bool = True, **extra: Any) -> dict[str, Any]:
    return {"token": token, "scope": scope, "sub": "alice", "sid": "alice-session", "consume": consume, **extra}


# --- who may call ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sis_not-a-configured-credential-000000000000", "Basic c2lzXzp4", "Bearer "],
    ids=["none", "unknown", "basic", "empty"],
)
async def test_only_a_configured_service_credential_may_introspect(
    stack: StepUpStack, authorization: str | None
) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    status, headers, body = await introspect(stack, request(token), credential=None, authorization=authorization)
    assert status == 401
    assert body["code"] == "invalid_client"
    assert headers["WWW-Authenticate"] == 'Bearer realm="stepup"'
    # Nothing was spent by the refused calls.
    status, _, body = await introspect(stack, request(token))
    assert (status, body["active"]) == (200, True)


async def test_a_users_session_is_not_a_service_credential(stack: StepUpStack) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    status, _, body = await introspect(stack, request(token), authorization=stack.headers("alice")["Authorization"])
    assert (status, body["code"]) == (401, "invalid_client")


def test_the_configuration_holds_only_the_credentials_hash() -> None:
    credential, digest = new_service_credential()
    assert credential.startswith("sis_") and digest == credential_hash(credential)
    assert digest.startswith("sha256:") and credential not in digest
    with pytest.raises(ConfigError, match="hash"):
        config_from_mapping({"introspection": {"clients": {"billing": credential}}})


# --- what it answers ------------------------------------------------------------------------------


async def test_a_single_use_token_is_spent_by_the_first_consuming_call(stack: StepUpStack, clock: ManualClock) -> None:
    issued = await step_up(stack, "wallet:export")
    status, _, body = await introspect(stack, request(issued["elevatedAccessToken"]))
    assert status == 200
    assert body == {
        "active": True, "allow": True, "scope": "wallet:export", "sub": "alice", "sid": "alice-session",
        "exp": int(issued["expiresAt"]), "iat": int(clock.now()), "auth_time": int(clock.now()), "acr": None,
        "amr": ["otp"], "method": "pin", "singleUse": True, "consumed": True, "challenge": None,
    }
    status, _, again = await introspect(stack, request(issued["elevatedAccessToken"]))
    assert (status, again["active"], again["allow"]) == (200, False, False)
    challenge = again["challenge"]
    assert challenge["status"] == 401
    assert challenge["headers"]["WWW-Authenticate"].startswith('Bearer error="insufficient_user_authentication"')
    assert challenge["headers"]["Content-Type"] == "application/problem+json; charset=utf-8"
    import json

    problem = json.loads(challenge["body"])
    assert problem["code"] == "insufficient_user_authentication" and problem["check"]["methods"] == ["pin"]


async def test_without_consume_a_single_use_token_is_only_looked_at(stack: StepUpStack) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    for _ in range(3):
        status, _, body = await introspect(stack, request(token, consume=False))
        assert (status, body["active"], body["allow"], body["consumed"]) == (200, True, True, False)
    status, _, body = await introspect(stack, request(token))
    assert (body["active"], body["consumed"]) == (True, True)


async def test_a_hundred_concurrent_consuming_calls_let_exactly_one_through(stack: StepUpStack) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    answers = await asyncio.gather(*(introspect(stack, request(token)) for _ in range(100)))
    assert sorted(body["allow"] for _, _, body in answers) == [False] * 99 + [True]


@pytest.mark.parametrize(
    "mismatch",
    [{"sub": "bob"}, {"sid": "another-session"}, {"scope": "user:delete"}],
    ids=["other-user", "other-session", "other-scope"],
)
async def test_a_token_is_active_only_for_its_user_session_and_scope(
    stack: StepUpStack, mismatch: dict[str, str]
) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    status, _, body = await introspect(stack, {**request(token), **mismatch})
    assert (status, body["active"], body["allow"]) == (200, False, False)
    assert body["sub"] is None and body["scope"] is None  # nothing about a token that is not active
    status, _, body = await introspect(stack, request(token))
    assert body["active"] is True  # the refusals spent nothing


async def test_a_scope_that_needs_no_step_up_is_allowed_without_a_token(stack: StepUpStack) -> None:
    status, _, body = await introspect(stack, request(None, scope="app:read"))
    assert (status, body["active"], body["allow"], body["challenge"]) == (200, False, True, None)


async def test_a_signed_grant_is_introspected_like_any_other(stack: StepUpStack) -> None:
    issued = await step_up(stack, "user:update")
    assert issued["elevatedAccessToken"].count(".") == 2  # a JWT
    status, _, body = await introspect(stack, request(issued["elevatedAccessToken"], scope="user:update"))
    assert (status, body["active"], body["singleUse"], body["consumed"]) == (200, True, False, False)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"scope": "nope:nope"}, "invalid_scope"), ({"sub": ""}, "validation_error"),
        ({"sid": "x" * 600}, "validation_error"), ({"consume": "yes"}, "validation_error"),
        ({"extra": 1}, "validation_error"),
    ],
)
async def test_bad_requests_are_refused_with_a_stable_code(
    stack: StepUpStack, change: dict[str, Any], code: str
) -> None:
    status, _, body = await introspect(stack, {**request("sut_x"), **change})
    assert (status, body["code"]) == (422, code)


async def test_a_store_that_cannot_be_reached_is_503_never_allow(stack: StepUpStack, switch: SwitchableStore) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    switch.down = True
    for consume in (True, False):
        status, _, body = await introspect(stack, request(token, consume=consume))
        assert (status, body["code"]) == (503, "store_unavailable")
    switch.down = False
    status, _, body = await introspect(stack, request(token))
    assert body["allow"] is True


async def test_every_call_is_audited_with_the_callers_name(stack: StepUpStack, methods: ThrowawayPlugin) -> None:
    token = (await step_up(stack, "wallet:export"))["elevatedAccessToken"]
    await introspect(stack, request(token))
    await introspect(stack, request(token))
    events = [e for e in methods.events if e.type == "introspected"]
    assert [(e.outcome, e.details["client"], e.details["active"]) for e in events] == [
        ("success", "billing", True), ("failure", "billing", False),
    ]


# --- RemoteGuard's failures -----------------------------------------------------------------------


async def test_remote_guard_refuses_when_its_credential_is_refused(stack: StepUpStack) -> None:
    gate = RemoteGuard(stack.base_url + "/stepup", "sis_wrong-credential-00000000000000000000000")
    try:
        answer = await gate.decide("wallet:export", ALICE, None, where="/wallet/export")
    finally:
        await gate.close()
    assert not hasattr(answer, "grant")
    assert (answer.status, answer.json()["code"]) == (500, "config_error")


async def test_remote_guard_answers_503_when_the_server_cannot_be_reached() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gate = RemoteGuard(f"http://127.0.0.1:{port}/stepup", SERVICE_CREDENTIAL, timeout=2)
    try:
        answer = await gate.decide("wallet:export", ALICE, "sut_x", where="/wallet/export")
    finally:
        await gate.close()
    assert (answer.status, answer.json()["code"]) == (503, "store_unavailable")
