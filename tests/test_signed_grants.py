"""Signed grants: a scope whose policy says ``signed = true`` gets its time-bound grants as JWTs
(ES256 or EdDSA) that an independent JOSE library in another language (Node's ``jose``, from
npm) verifies with ``{prefix}/jwks.json`` alone. Keys rotate; a retired key stays published
until its last token has expired; a removed key's tokens are refused everywhere, by jose and
by stepup's own guards. Single-use scopes are never signed."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, grant_of, requires_scope, serve_app
from stepup_core.service import StepUpService
from stepup_core.signing import PUBLISH_LEEWAY
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack

ROOT = Path(__file__).resolve().parents[1]
VERIFY = ROOT / "tests" / "js" / "verify_jwt.mjs"
PIN = "2468"
ALICE = Principal("alice", "alice-session")
CLAIMS = {"iss", "sub", "sid", "scope", "exp", "iat", "jti", "acr", "amr", "auth_time"}


def jose_verify(token: str, jwks_url: str, issuer: str, now: float) -> dict[str, Any]:
    """Node's jose verifies ``token`` against the keys at ``jwks_url`` (a subprocess)."""
    node = shutil.which("node")
    assert node is not None, "these tests need Node.js on PATH (.ci/run installs it)"
    assert (ROOT / "node_modules" / "jose").is_dir(), "run `npm ci` first: the jose package verifies the JWTs"
    import subprocess

    done = subprocess.run(
        [node, str(VERIFY), token, jwks_url, issuer, str(int(now))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.stdout.strip(), done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def jose(token: str, jwks_url: str, issuer: str, now: float) -> dict[str, Any]:
    return await asyncio.to_thread(jose_verify, token, jwks_url, issuer, now)


def settings(algorithm: str = "ES256", **extra: Any) -> dict[str, Any]:
    return {
        "scopes": {"user:update": {"signed": True}, "billing:payout": {"signed": True, "ttl": 300}},
        "acr": {"urn:example:mfa": ["pin"]},
        "grants": {"algorithm": algorithm, "issuer": "https://auth.example/stepup", "key_rotation": 3600},
        **extra,
    }


@pytest.fixture
async def stack(clock: ManualClock) -> AsyncIterator[StepUpStack]:
    plugin = ThrowawayPlugin([PinVerifier(name="pin")])
    async with StepUpStack.start(plugins=[plugin], config=settings(), clock=clock) as stack:
        status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        assert status == 201
        yield stack


async def step_up(stack: StepUpStack, scopes: list[str]) -> dict[str, Any]:
    status, begun = await stack.api("alice", "POST", "/challenges", {"method": "pin", "requestedScopes": scopes})
    assert status == 201, begun
    status, issued = await stack.api(
        "alice", "POST", "/verify", {"method": "pin", "challengeId": begun["challengeId"], "response": {"code": PIN}}
    )
    assert status == 200, issued
    return dict(issued)


def jwks_url(stack: StepUpStack) -> str:
    return stack.base_url + "/stepup/jwks.json"


# --- the token ------------------------------------------------------------------------------------


async def test_a_signed_grant_is_a_jwt_that_jose_verifies_with_the_published_keys(
    stack: StepUpStack, clock: ManualClock
) -> None:
    issued = await step_up(stack, ["user:update"])
    token = issued["elevatedAccessToken"]
    verified = await jose(token, jwks_url(stack), "https://auth.example/stepup", clock.now())
    assert verified["ok"] is True, verified
    header, payload = verified["header"], verified["payload"]
    assert header["alg"] == "ES256" and header["typ"] == "stepup-grant+jwt" and header["kid"]
    assert set(payload) == CLAIMS
    now = int(clock.now())
    assert payload == {
        "iss": "https://auth.example/stepup", "sub": "alice", "sid": "alice-session", "scope": "user:update",
        "iat": now, "exp": now + 600, "auth_time": now, "acr": "urn:example:mfa", "amr": ["otp"],
        "jti": payload["jti"],
    }
    assert issued["expiresAt"] == payload["exp"] and len(payload["jti"]) >= 16
    async with stack.http.get(jwks_url(stack)) as resp:
        assert resp.headers["Cache-Control"] == "public, max-age=60"
        keys = (await resp.json())["keys"]
    assert [k["kid"] for k in keys] == [header["kid"]]
    assert all("d" not in k for k in keys)  # never the private half


async def test_jose_refuses_an_expired_or_tampered_grant(stack: StepUpStack, clock: ManualClock) -> None:
    token = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    expired = await jose(token, jwks_url(stack), "https://auth.example/stepup", clock.now() + 601)
    assert expired == {**expired, "ok": False, "code": "ERR_JWT_EXPIRED"}
    head, payload, signature = token.split(".")
    forged_payload = payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB")
    forged = f"{head}.{forged_payload}.{signature}"
    refused = await jose(forged, jwks_url(stack), "https://auth.example/stepup", clock.now())
    assert refused["ok"] is False
    other_issuer = await jose(token, jwks_url(stack), "https://elsewhere.example", clock.now())
    assert other_issuer["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"


async def test_eddsa_grants_verify_too(clock: ManualClock) -> None:
    plugin = ThrowawayPlugin([PinVerifier(name="pin")])
    async with StepUpStack.start(plugins=[plugin], config=settings("EdDSA"), clock=clock) as stack:
        await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        token = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
        verified = await jose(token, jwks_url(stack), "https://auth.example/stepup", clock.now())
    assert verified["ok"] is True and verified["header"]["alg"] == "EdDSA"


async def test_single_use_and_mixed_grants_stay_opaque(stack: StepUpStack) -> None:
    assert (await step_up(stack, ["wallet:export"]))["elevatedAccessToken"].startswith("sut_")
    assert (await step_up(stack, ["user:update", "user:delete"]))["elevatedAccessToken"].startswith("sut_")
    assert (await step_up(stack, ["user:update", "billing:payout"]))["elevatedAccessToken"].count(".") == 2
    with pytest.raises(ConfigError, match="single-use"):
        config_from_mapping({"scopes": {"wallet:export": {"signed": True}}})


# --- stepup's own guard ---------------------------------------------------------------------------


@pytest.fixture
async def guarded(stack: StepUpStack) -> AsyncIterator[str]:
    """An application guarding POST /profile by user:update with stepup's service."""
    app = build_app(stack.service, _identify)

    @requires_scope("user:update")
    async def profile(request: web.Request) -> web.Response:
        grant = grant_of(request)
        return web.json_response({"method": grant.method if grant else None})

    app.router.add_post("/profile", profile)
    async with serve_app(app) as base_url:
        yield base_url


async def _identify(request: Any) -> Principal | None:
    return ALICE if request.headers.get("Authorization") == "Bearer alice" else None


async def profile(stack: StepUpStack, base_url: str, token: str) -> int:
    headers = {"Authorization": "Bearer alice", "X-Elevated-Access-Token": token}
    async with stack.http.post(base_url + "/profile", headers=headers) as resp:
        return resp.status


async def test_the_guard_accepts_a_signed_grant_and_it_can_be_revoked(stack: StepUpStack, guarded: str) -> None:
    token = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    assert [await profile(stack, guarded, token) for _ in range(2)] == [200, 200]
    status, body = await stack.api("alice", "DELETE", "/grants")
    assert (status, body) == (200, {"revoked": 1})
    assert await profile(stack, guarded, token) == 401
    # A JWT the server never issued (a stranger's key) is no grant, whatever it says.
    from joserfc import jwt
    from joserfc.jwk import ECKey

    stranger = ECKey.generate_key("P-256", private=True)
    forged = jwt.encode({"alg": "ES256"}, {"sub": "alice", "sid": "alice-session", "scope": "user:update"}, stranger)
    assert await profile(stack, guarded, forged) == 401


# --- rotation and removal -------------------------------------------------------------------------


async def test_keys_rotate_and_a_retired_key_stays_until_its_last_token_expires(
    stack: StepUpStack, clock: ManualClock, guarded: str
) -> None:
    first = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    clock.advance(3500)  # the first key is 58 minutes old: still current
    second = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    kid = lambda token: json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[0] + "==")).get("kid")  # noqa: E731
    assert kid(first) == kid(second)
    clock.advance(200)  # past the rotation period: the next grant is signed by a new key
    third = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    assert kid(third) != kid(second)
    published = [k["kid"] for k in (await stack.service.keyring.jwks())["keys"]]
    assert published == [kid(third), kid(second)]  # newest first; the retired one still there
    verified = await jose(second, jwks_url(stack), "https://auth.example/stepup", clock.now())
    assert verified["ok"] is True  # signed by the retired key, still alive, still verifiable
    assert await profile(stack, guarded, second) == 200
    # The retired key is published until the longest signed TTL (600 s) and a minute have passed.
    clock.advance(600 + PUBLISH_LEEWAY - 1)
    assert kid(second) in [k["kid"] for k in (await stack.service.keyring.jwks())["keys"]]
    clock.advance(2)
    assert [k["kid"] for k in (await stack.service.keyring.jwks())["keys"]] == [kid(third)]


async def test_a_removed_key_is_refused_by_jose_and_by_stepups_guard(
    stack: StepUpStack, clock: ManualClock, guarded: str
) -> None:
    token = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    assert (await jose(token, jwks_url(stack), "https://auth.example/stepup", clock.now()))["ok"] is True
    assert await profile(stack, guarded, token) == 200
    kid = (await stack.service.keyring.current()).kid
    assert await stack.service.keyring.remove(kid) is True
    refused = await jose(token, jwks_url(stack), "https://auth.example/stepup", clock.now())
    assert (refused["ok"], refused["code"]) == (False, "ERR_JWKS_NO_MATCHING_KEY")
    assert await profile(stack, guarded, token) == 401
    status, check = await stack.api("alice", "POST", "/check", {"scope": "user:update"}, token=token)
    assert (status, check["isRequired"]) == (200, True)
    # The next grant is signed by a new key.
    fresh = (await step_up(stack, ["user:update"]))["elevatedAccessToken"]
    assert (await jose(fresh, jwks_url(stack), "https://auth.example/stepup", clock.now()))["ok"] is True


async def test_every_instance_signs_with_the_same_key(clock: ManualClock) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    config = config_from_mapping({"store": "memory:", "secret_key": secrets.token_hex(32), **settings()})
    one = await StepUpService.create(config, pm=pm, clock=clock)
    two = await StepUpService.create(config, pm=pm, clock=clock, store=one.store)
    try:
        first, second = await asyncio.gather(one.keyring.current(), two.keyring.current())
        assert first.kid == second.kid
        assert len((await two.keyring.jwks())["keys"]) == 1
        stored = await one.store.get("signing-keys")
        assert stored is not None and '"d"' not in stored  # the private half is sealed
    finally:
        await one.close()
