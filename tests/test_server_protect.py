"""``requires_scope`` on the application's own routes: the RFC 9470 challenge, single use, time
bounds, user/session/scope binding, failing closed when the store is gone (memory and SQLite)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stepup_core import errors
from stepup_core.config import config_from_mapping
from stepup_core.server import build_app, grant_of, principal_from, requires_scope
from stepup_core.service import StepUpService

ALICE = {"Authorization": "Bearer alice:s1"}
ALICE_OTHER_SESSION = {"Authorization": "Bearer alice:s2"}
BOB = {"Authorization": "Bearer bob:s1"}
PROBLEM = "application/problem+json"
EXPORT_CHALLENGE = (
    'Bearer error="insufficient_user_authentication", '
    'error_description="Step-up authentication is required for this action", scope="wallet:export"'
)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"scopes": {"app:read": {"required": False}}}


@pytest.fixture
def store(switchable_store: Any) -> Any:
    return switchable_store


def protected_app(service: StepUpService, identify: Any, calls: list[str]) -> web.Application:
    """An application with stepup mounted and its own guarded routes."""
    app = build_app(service, identify)

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response:
        calls.append("export")
        grant = grant_of(request)
        principal = principal_from(request)
        assert grant is not None and principal is not None
        return web.json_response(
            {"exported": True, "user": principal.user_id, "method": grant.method, "singleUse": grant.single_use}
        )

    @requires_scope("user:update")
    async def update_profile(request: web.Request) -> web.Response:
        calls.append("profile")
        return web.json_response({"updated": True})

    @requires_scope("app:read")
    async def read_report(request: web.Request) -> web.Response:
        calls.append("read")
        return web.json_response({"grant": grant_of(request) is not None})

    class AccountView(web.View):
        @requires_scope("user:delete")
        async def delete(self) -> web.Response:
            calls.append("delete-account")
            return web.json_response({"deleted": True})

    app.router.add_post("/wallet/export", export_key)
    app.router.add_post("/profile", update_profile)
    app.router.add_get("/report", read_report)
    app.router.add_view("/account", AccountView)
    return app


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
async def client(service: Any, identify: Any, http_client: Any, calls: list[str]) -> Any:
    return await http_client(protected_app(service, identify, calls))


async def enrol_pin(client: Any, headers: dict[str, str] = ALICE) -> str:
    start = await client.post("/stepup/enrollments", json={"method": "pin", "params": {"pin": "2468"}}, headers=headers)
    assert start.status == 201, await start.text()
    enrollment = (await start.json())["enrollmentId"]
    done = await client.post(f"/stepup/enrollments/{enrollment}", json={"response": {"pin": "2468"}}, headers=headers)
    assert done.status == 200, await done.text()
    return str((await done.json())["id"])


async def step_up(client: Any, scopes: list[str], headers: dict[str, str] = ALICE) -> dict[str, Any]:
    begin = await client.post("/stepup/challenges", json={"method": "pin", "requestedScopes": scopes}, headers=headers)
    assert begin.status == 201, await begin.text()
    challenge = (await begin.json())["challengeId"]
    verified = await client.post(
        "/stepup/verify",
        json={"method": "pin", "challengeId": challenge, "response": {"code": "2468"}},
        headers=headers,
    )
    assert verified.status == 200, await verified.text()
    return dict(await verified.json())


def with_token(headers: dict[str, str], token: str) -> dict[str, str]:
    return {**headers, "X-Elevated-Access-Token": token}


async def assert_step_up_required(resp: Any, scope: str) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == 401, text
    assert resp.content_type == PROBLEM
    assert resp.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        f'error_description="Step-up authentication is required for this action", scope="{scope}"'
    )
    body = json.loads(text)
    assert body["code"] == "insufficient_user_authentication"
    assert body["scope"] == scope
    assert body["check"]["scope"] == scope
    assert body["check"]["isRequired"] is True
    return dict(body)


# --- the challenge -------------------------------------------------------------------------------


async def test_no_token_is_an_rfc9470_challenge_with_the_check(client: Any, calls: list[str]) -> None:
    credential = await enrol_pin(client)
    resp = await client.post("/wallet/export", headers=ALICE)
    assert resp.headers["WWW-Authenticate"] == EXPORT_CHALLENGE
    body = await assert_step_up_required(resp, "wallet:export")
    assert body["status"] == 401
    assert body["type"] == "urn:stepup:problem:insufficient_user_authentication"
    assert body["check"]["route"] == "mfa"
    assert body["check"]["defaultCredentialId"] == credential
    assert body["check"]["methods"] == ["pin"]
    assert calls == []


async def test_a_client_goes_straight_from_the_401_to_verification(client: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    refused = await (await client.post("/wallet/export", headers=ALICE)).json()
    check = refused["check"]
    begin = await client.post(
        "/stepup/challenges",
        json={
            "method": check["methods"][0],
            "credentialId": check["defaultCredentialId"],
            "requestedScopes": [refused["scope"]],
        },
        headers=ALICE,
    )
    challenge = (await begin.json())["challengeId"]
    issued = await (
        await client.post(
            "/stepup/verify",
            json={"method": "pin", "challengeId": challenge, "response": {"code": "2468"}},
            headers=ALICE,
        )
    ).json()
    resp = await client.post("/wallet/export", headers=with_token(ALICE, issued["elevatedAccessToken"]))
    assert resp.status == 200
    assert await resp.json() == {"exported": True, "user": "alice", "method": "pin", "singleUse": True}
    assert calls == ["export"]


async def test_anonymous_caller_is_unauthenticated_not_asked_to_step_up(client: Any, calls: list[str]) -> None:
    resp = await client.post("/wallet/export")
    assert resp.status == 401
    assert (await resp.json())["code"] == "unauthenticated"
    assert "insufficient_user_authentication" not in resp.headers["WWW-Authenticate"]
    assert calls == []


# --- token semantics -----------------------------------------------------------------------------


async def test_single_use_token_is_consumed_by_the_first_request(client: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    token = (await step_up(client, ["wallet:export"]))["elevatedAccessToken"]
    first = await client.post("/wallet/export", headers=with_token(ALICE, token))
    assert first.status == 200
    second = await client.post("/wallet/export", headers=with_token(ALICE, token))
    await assert_step_up_required(second, "wallet:export")
    check = await client.post("/stepup/check", json={"scope": "wallet:export"}, headers=with_token(ALICE, token))
    assert (await check.json())["isRequired"] is True
    assert calls == ["export"]


async def test_concurrent_presentations_of_a_single_use_token_let_exactly_one_through(
    client: Any, calls: list[str]
) -> None:
    await enrol_pin(client)
    token = (await step_up(client, ["wallet:export"]))["elevatedAccessToken"]
    answers = await asyncio.gather(
        *(client.post("/wallet/export", headers=with_token(ALICE, token)) for _ in range(20))
    )
    assert sorted(r.status for r in answers) == [200] + [401] * 19
    assert calls == ["export"]


async def test_time_bound_token_is_reusable_until_it_expires(client: Any, clock: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    issued = await step_up(client, ["user:update"])
    assert issued["singleUse"] is False
    headers = with_token(ALICE, issued["elevatedAccessToken"])
    for _ in range(3):
        assert (await client.post("/profile", headers=headers)).status == 200
    clock.advance(599)
    assert (await client.post("/profile", headers=headers)).status == 200
    clock.advance(2)
    await assert_step_up_required(await client.post("/profile", headers=headers), "user:update")
    assert calls == ["profile"] * 4


async def test_a_token_is_bound_to_user_session_and_scope(client: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    await enrol_pin(client, BOB)
    token = (await step_up(client, ["user:update"]))["elevatedAccessToken"]
    await assert_step_up_required(await client.post("/profile", headers=with_token(BOB, token)), "user:update")
    await assert_step_up_required(
        await client.post("/profile", headers=with_token(ALICE_OTHER_SESSION, token)), "user:update"
    )
    # user:update does not cover wallet:export, nor user:delete.
    await assert_step_up_required(
        await client.post("/wallet/export", headers=with_token(ALICE, token)), "wallet:export"
    )
    await assert_step_up_required(await client.delete("/account", headers=with_token(ALICE, token)), "user:delete")
    # The owner can still use it: the refusals above did not spend it.
    assert (await client.post("/profile", headers=with_token(ALICE, token))).status == 200
    assert calls == ["profile"]


@pytest.mark.parametrize(
    "token",
    ["sut_", "sut_" + "A" * 43, "not-a-token", "sut_" + "x" * 4000, "sut_%00\u00e9"],
    ids=["prefix-only", "unknown", "no-prefix", "huge", "odd-bytes"],
)
async def test_forged_tokens_are_refused(client: Any, calls: list[str], token: str) -> None:
    await enrol_pin(client)
    resp = await client.post("/profile", headers=with_token(ALICE, token.encode("utf-8").decode("latin-1")))
    await assert_step_up_required(resp, "user:update")
    assert calls == []


async def test_revoked_grants_stop_working(client: Any) -> None:
    await enrol_pin(client)
    token = (await step_up(client, ["user:update"]))["elevatedAccessToken"]
    assert (await client.post("/profile", headers=with_token(ALICE, token))).status == 200
    assert (await (await client.delete("/stepup/grants", headers=ALICE)).json()) == {"revoked": 1}
    await assert_step_up_required(await client.post("/profile", headers=with_token(ALICE, token)), "user:update")


async def test_class_based_views_are_guarded(client: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    await assert_step_up_required(await client.delete("/account", headers=ALICE), "user:delete")
    token = (await step_up(client, ["user:delete"]))["elevatedAccessToken"]
    resp = await client.delete("/account", headers=with_token(ALICE, token))
    assert resp.status == 200
    assert calls == ["delete-account"]


# --- policy and configuration --------------------------------------------------------------------


async def test_a_scope_whose_policy_needs_no_step_up_lets_the_caller_through(client: Any, calls: list[str]) -> None:
    resp = await client.get("/report", headers=ALICE)
    assert resp.status == 200
    assert await resp.json() == {"grant": False}
    assert calls == ["read"]


async def test_an_undeclared_scope_stops_the_application_start(service: Any, identify: Any, calls: list[str]) -> None:
    """A typo in ``requires_scope`` is found when the application starts, not at the first request."""
    app = protected_app(service, identify, calls)

    @requires_scope("app:undeclared")
    async def misconfigured(request: web.Request) -> web.Response:
        calls.append("misconfigured")
        return web.json_response({})

    class Admin(web.View):
        @requires_scope("admin:purge")
        async def post(self) -> web.Response:
            return web.json_response({})

    app.router.add_get("/misconfigured", misconfigured)
    reports = web.Application()
    reports.router.add_view("/purge", Admin)
    app.add_subapp("/reports", reports)
    runner = web.AppRunner(app)
    with pytest.raises(errors.ConfigError) as caught:
        await runner.setup()
    await runner.cleanup()
    message = str(caught.value)
    assert "GET/HEAD /misconfigured needs 'app:undeclared'" in message
    assert "POST /reports/purge needs 'admin:purge'" in message
    assert "declared_scopes" in message
    # Known scopes (built-in, declared by a policy key) are not named.
    assert "wallet:export" not in message and "app:read" not in message
    assert calls == []


async def test_a_guard_the_start_cannot_see_still_refuses_an_undeclared_scope(
    service: Any, identify: Any, http_client: Any, calls: list[str], caplog: Any
) -> None:
    """A guarded handler hidden behind a wrapper without ``functools.wraps``: the start cannot
    see its scope, and each request is refused with a server error; the handler never runs."""
    app = protected_app(service, identify, calls)

    @requires_scope("app:undeclared")
    async def misconfigured(request: web.Request) -> web.Response:
        calls.append("misconfigured")
        return web.json_response({})

    async def hidden(request: web.Request) -> web.StreamResponse:
        return await misconfigured(request)

    app.router.add_get("/misconfigured", hidden)
    client = await http_client(app)
    resp = await client.get("/misconfigured", headers=ALICE)
    assert resp.status == 500
    body = await resp.json()
    assert body["code"] == "config_error"
    assert "app:undeclared" in caplog.text
    assert calls == []


def test_a_malformed_scope_fails_at_decoration() -> None:
    with pytest.raises(errors.InvalidScope):
        requires_scope("Wallet Export")


# --- failing closed ------------------------------------------------------------------------------


async def test_store_unreachable_is_503_never_a_grant(client: Any, store: Any, calls: list[str]) -> None:
    await enrol_pin(client)
    single = (await step_up(client, ["wallet:export"]))["elevatedAccessToken"]
    bound = (await step_up(client, ["user:update"]))["elevatedAccessToken"]
    store.down = True
    for path, token in (("/wallet/export", single), ("/profile", bound), ("/profile", None)):
        headers = with_token(ALICE, token) if token else ALICE
        resp = await client.post(path, headers=headers)
        assert resp.status == 503, await resp.text()
        assert resp.content_type == PROBLEM
        assert (await resp.json())["code"] == "store_unavailable"
    check = await client.post("/stepup/check", json={"scope": "user:update"}, headers=with_token(ALICE, bound))
    assert check.status == 200
    assert (await check.json())["isRequired"] is True
    assert calls == []
    # Back up: the single-use token was never spent by the failed attempts.
    store.down = False
    assert (await client.post("/wallet/export", headers=with_token(ALICE, single))).status == 200
    assert calls == ["export"]


@pytest.fixture
async def sqlite_service(pm: Any, clock: Any, tmp_path: Path) -> AsyncIterator[StepUpService]:
    config = config_from_mapping(
        {
            "store": f"sqlite:{tmp_path / 'stepup.sqlite3'}",
            "secret_key": secrets.token_hex(32),
            "scopes": {"app:read": {"required": False}},  # protected_app guards /report with it
        }
    )
    svc = await StepUpService.create(config, pm=pm, clock=clock)
    yield svc
    await svc.close()


async def test_sqlite_store_closed_is_503_and_check_required(
    sqlite_service: StepUpService, identify: Callable[..., Any], http_client: Any, calls: list[str]
) -> None:
    client = await http_client(protected_app(sqlite_service, identify, calls))
    await enrol_pin(client)
    token = (await step_up(client, ["user:update"]))["elevatedAccessToken"]
    assert (await client.post("/profile", headers=with_token(ALICE, token))).status == 200
    await sqlite_service.store.close()
    resp = await client.post("/profile", headers=with_token(ALICE, token))
    assert resp.status == 503
    assert (await resp.json())["code"] == "store_unavailable"
    check = await client.post("/stepup/check", json={"scope": "user:update"}, headers=with_token(ALICE, token))
    assert (await check.json())["isRequired"] is True
    assert calls == ["profile"]


async def test_sqlite_single_use_token_under_concurrency(
    sqlite_service: StepUpService, identify: Callable[..., Any], http_client: Any, calls: list[str]
) -> None:
    client = await http_client(protected_app(sqlite_service, identify, calls))
    await enrol_pin(client)
    token = (await step_up(client, ["wallet:export"]))["elevatedAccessToken"]
    answers = await asyncio.gather(
        *(client.post("/wallet/export", headers=with_token(ALICE, token)) for _ in range(20))
    )
    assert sorted(r.status for r in answers) == [200] + [401] * 19
    assert calls == ["export"]
