"""The admin HTTP API: off by default, operators only (never a user's session), every action
audited, answers checked against openapi.json (which documents it where it is mounted)."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi

from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError
from stepup_core.server import build_app, document_for

OPERATOR_TOKEN = "op-token-for-dana-0123456789"
ALICE = {"Authorization": "Bearer alice:s1"}
ALICE_PHONE = {"Authorization": "Bearer alice:s2"}
DANA = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ADMIN_ON = {"admin": {"enabled": True, "identify": {"mode": "tokens", "tokens": {OPERATOR_TOKEN: {"user_id": "dana"}}}}}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return ADMIN_ON


@pytest.fixture
async def client(service: Any, identify: Any, http_client: Any) -> Any:
    return await http_client(build_app(service, identify), admin=True)


async def _enrol_and_step_up(client: Any, headers: dict[str, str], pin: str = "1234") -> str:
    start = await client.post("/stepup/enrollments", json={"method": "pin", "params": {"pin": pin}}, headers=headers)
    body = await start.json()
    if start.status != 401:  # 401: a second session of a user who already holds the PIN
        assert start.status == 201, body
        done = await client.post(
            f"/stepup/enrollments/{body['enrollmentId']}", json={"response": {"pin": pin}}, headers=headers
        )
        assert done.status == 200, await done.text()
    begin = await client.post("/stepup/challenges", json={"method": "pin", "requestedScopes": ["user:update"]},
                              headers=headers)
    challenge = await begin.json()
    verified = await client.post(
        "/stepup/verify",
        json={"method": "pin", "challengeId": challenge["challengeId"], "response": {"code": pin}},
        headers=headers,
    )
    assert verified.status == 200, await verified.text()
    return str((await verified.json())["elevatedAccessToken"])


async def _check(client: Any, headers: dict[str, str], token: str) -> bool:
    resp = await client.post("/stepup/check", json={"scope": "user:update"},
                             headers={**headers, "X-Elevated-Access-Token": token})
    return bool((await resp.json())["isRequired"])


def _admin_events(methods: Any) -> list[Any]:
    return [e for e in methods.events if e.type.startswith("admin_")]


# --- off by default ---------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{}])
async def test_the_admin_api_is_off_by_default(client: Any, service: Any) -> None:
    resp = await client.get("/stepup/admin/users/alice", headers=DANA)
    assert resp.status == 404
    document = await (await client.get("/stepup/openapi.json")).json()
    assert not [p for p in document["paths"] if "/admin/" in p]
    assert "admin" not in document["components"]["securitySchemes"]


# --- who may call -----------------------------------------------------------------------------


async def test_a_users_session_never_reaches_the_admin_api_and_the_refusal_is_audited(
    client: Any, methods: Any
) -> None:
    await _enrol_and_step_up(client, ALICE)
    for headers in (ALICE, {}, {"Authorization": "Bearer not-an-operator-token-at-all"}):
        resp = await client.get("/stepup/admin/users/alice", headers=headers)
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["code"] == "unauthenticated"
        reset = await client.post("/stepup/admin/users/alice/mfa-reset", headers=headers)
        assert reset.status == 401
    refused = _admin_events(methods)
    assert [e.type for e in refused] == ["admin_unauthenticated"] * 6
    assert all(e.outcome == "failure" for e in refused)
    # Nothing was reset.
    listed = await client.get("/stepup/credentials", headers=ALICE)
    assert len(await listed.json()) == 1


async def test_an_operator_token_is_no_user_session(client: Any) -> None:
    resp = await client.get("/stepup/credentials", headers=DANA)
    assert resp.status == 401


# --- the operations ---------------------------------------------------------------------------


async def test_show_user_holds_credentials_grants_and_lockout_without_secrets(client: Any, methods: Any) -> None:
    await _enrol_and_step_up(client, ALICE)
    for _ in range(3):  # three wrong PINs count toward the lockout
        begin = await client.post("/stepup/challenges", json={"method": "pin", "requestedScopes": ["user:update"]},
                                  headers=ALICE)
        wrong = await client.post("/stepup/verify", json={
            "method": "pin", "challengeId": (await begin.json())["challengeId"], "response": {"code": "0000"}},
            headers=ALICE)
        assert wrong.status == 400
    resp = await client.get("/stepup/admin/users/alice", headers=DANA)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["userId"] == "alice"
    assert [c["method"] for c in report["credentials"]] == ["pin"]
    assert [g["sessionId"] for g in report["grants"]] == ["s1"]
    assert report["grants"][0]["scopes"] == ["user:update"]
    assert report["lockout"] == {"failures": 3, "limit": 10, "window": 900.0, "locked": False}
    text = await resp.text()
    assert "pinHash" not in text and "tokenHash" not in text and "sut_" not in text
    viewed = _admin_events(methods)[-1]
    assert (viewed.type, viewed.user_id, viewed.details) == (
        "admin_user_viewed", "alice", {"operator": "dana", "via": "http"},
    )

    unlocked = await client.post("/stepup/admin/users/alice/unlock", headers=DANA)
    assert await unlocked.json() == {"userId": "alice", "failuresCleared": 3}
    report = await (await client.get("/stepup/admin/users/alice", headers=DANA)).json()
    assert report["lockout"]["failures"] == 0


async def test_revoking_a_session_then_the_user_refuses_their_tokens(client: Any, methods: Any) -> None:
    laptop = await _enrol_and_step_up(client, ALICE)
    phone = await _enrol_and_step_up(client, ALICE_PHONE)
    one = await client.delete("/stepup/admin/users/alice/sessions/s2/grants", headers=DANA)
    assert await one.json() == {"userId": "alice", "revoked": 1, "sessionId": "s2"}
    assert await _check(client, ALICE_PHONE, phone) is True
    assert await _check(client, ALICE, laptop) is False
    every = await client.delete("/stepup/admin/users/alice/grants", headers=DANA)
    assert await every.json() == {"userId": "alice", "revoked": 1, "sessionId": None}
    assert await _check(client, ALICE, laptop) is True
    assert [e.type for e in _admin_events(methods)] == ["admin_grants_revoked", "admin_grants_revoked"]


async def test_delete_credential_and_reset_mfa(client: Any, methods: Any) -> None:
    token = await _enrol_and_step_up(client, ALICE)
    credential_id = (await (await client.get("/stepup/credentials", headers=ALICE)).json())[0]["id"]
    missing = await client.delete("/stepup/admin/users/alice/credentials/cred_nope", headers=DANA)
    assert missing.status == 404
    assert (await missing.json())["code"] == "credential_not_found"
    bad = await client.get("/stepup/admin/users/" + "x" * 300, headers=DANA)
    assert bad.status == 422

    reset = await client.post("/stepup/admin/users/alice/mfa-reset", headers=DANA)
    body = await reset.json()
    assert [c["id"] for c in body["removed"]] == [credential_id]
    assert body["grantsRevoked"] == 1
    assert await _check(client, ALICE, token) is True
    assert await (await client.get("/stepup/credentials", headers=ALICE)).json() == []
    events = _admin_events(methods)
    assert events[-1].type == "admin_mfa_reset"
    assert events[-1].details == {"operator": "dana", "via": "http", "removed": [credential_id], "grantsRevoked": 1}

    await _enrol_and_step_up(client, ALICE, pin="5678")  # a first credential again, no token needed
    new_id = (await (await client.get("/stepup/credentials", headers=ALICE)).json())[0]["id"]
    deleted = await client.delete(f"/stepup/admin/users/alice/credentials/{new_id}", headers=DANA)
    assert deleted.status == 200
    assert (await deleted.json())["id"] == new_id
    assert _admin_events(methods)[-1].credential_id == new_id


# --- the contract -----------------------------------------------------------------------------


async def test_openapi_documents_the_admin_api_where_it_is_mounted(client: Any, service: Any) -> None:
    document = await (await client.get("/stepup/openapi.json")).json()
    validate_openapi(document)
    assert document == document_for(service, "/stepup", admin=True)
    served = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method != "HEAD" and path and path.startswith("/stepup/admin/"):
            served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops if "/admin/" in p}
    assert served == documented
    assert len(documented) == 6
    for path, ops in document["paths"].items():
        for operation in ops.values():
            if "/admin/" in path:
                assert operation["security"] == [{"admin": []}]
            else:
                assert {"admin": []} not in operation["security"]


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ({"enabled": True}, "needs an \\[admin.identify\\] table"),
        (
            {"enabled": True, "identify": {"mode": "tokens", "tokens": {"shared-token-0123456789": {"user_id": "x"}}}},
            "share a token",
        ),
    ],
)
def test_admin_configurations_that_would_admit_users_are_refused(admin: dict[str, Any], message: str) -> None:
    identify = {"mode": "tokens", "tokens": {"shared-token-0123456789": {"user_id": "alice"}}}
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({"identify": identify, "admin": admin})


def test_an_admin_jwt_identify_needs_its_own_key_or_audience() -> None:
    user = {"mode": "jwt", "key": "k" * 40, "audience": "app"}
    with pytest.raises(ConfigError, match="would accept the application's session tokens"):
        config_from_mapping({"identify": user, "admin": {"enabled": True, "identify": dict(user)}})
    config_from_mapping({"identify": user, "admin": {"enabled": True, "identify": {**user, "audience": "ops"}}})
