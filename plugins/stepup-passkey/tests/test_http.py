"""Registration and step-up over HTTP: stepup's aiohttp server on loopback, StepUpClient with this
plugin's client half and the software authenticator. Every stepup answer is checked against the
OpenAPI document."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
import stepup_passkey.plugin
from aiohttp import web
from stepup_passkey.testing import SoftwareAuthenticator

from stepup_core.client import ScriptedPrompter, StepUpClient
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import VerificationFailed
from stepup_core.identify import StaticTokenIdentify
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, build_document, requires_scope, serve_app
from stepup_core.server.testing import ResponseValidator
from stepup_core.service import StepUpService

ORIGIN = "https://app.stepup.test"
SESSIONS = {
    "alice-session-token-000001": Principal("alice", "s-alice"),
    "bob-session-token-00000001": Principal("bob", "s-bob"),
}
TOKEN_OF = {p.user_id: token for token, p in SESSIONS.items()}


@attrs.define
class Stack:
    base_url: str
    service: StepUpService
    pm: Any
    http: aiohttp.ClientSession
    validator: ResponseValidator
    clock: ManualClock
    exports: list[str]

    def client(self, user: str, **kwargs: Any) -> StepUpClient:
        return StepUpClient(
            self.base_url, TOKEN_OF[user], pm=self.pm, http=self.http, clock=self.clock,
            prompter=ScriptedPrompter(), **kwargs,
        )


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    clock = ManualClock()
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_passkey.plugin, name="passkey")
    config = config_from_mapping({
        "store": "memory:",
        "secret_key": secrets.token_hex(32),
        "plugins": {"passkey": {"rp_id": "stepup.test", "rp_name": "Stepup Test", "origins": [ORIGIN]}},
    })
    service = await StepUpService.create(config, pm=pm, clock=clock)
    app = build_app(service, StaticTokenIdentify.from_mapping(SESSIONS))
    exports: list[str] = []

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response:
        exports.append("exported")
        return web.json_response({"exported": True})

    app.router.add_post("/wallet/export", export_key)
    validator = ResponseValidator(build_document("/stepup"), prefix="/stepup")
    async with serve_app(app) as base_url, aiohttp.ClientSession(middlewares=[validator.middleware]) as http:
        yield Stack(base_url, service, pm, http, validator, clock, exports)
    await service.close()


async def test_register_and_step_up_over_http(stack: Stack) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    alice = stack.client("alice")
    methods = await alice.methods()
    assert methods["passkey"].factor.value == "mfa" and methods["passkey"].interaction.value == "options"

    view = await alice.enroll("passkey", alias="Laptop", authenticator=authenticator, user_name="alice@example.test")
    assert view.alias == "Laptop" and view.method == "passkey"
    assert [c.id for c in await alice.list_credentials()] == [view.id]

    # Without a token the application refuses with an RFC 9470 challenge.
    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.exports == []

    token = await alice.verify_passkey_mfa(authenticator, requested_scopes=["wallet:export"])
    assert token.method == "passkey" and token.single_use
    done = await alice.post("/wallet/export", scope="wallet:export")
    assert done.status == 200 and done.json() == {"exported": True}
    assert stack.exports == ["exported"]
    assert ("POST", "/stepup/verify", 200) in stack.validator.seen


async def test_unattended_client_steps_up_with_its_actor(stack: Stack) -> None:
    """The prompt picks the passkey (alice's only MFA device) and the actor answers, as in
    ``stepup demo``; a 401 from the application triggers it once."""
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    alice = stack.client("alice", actors={"passkey": authenticator}, auto_step_up=True)
    await alice.enroll("passkey")
    response = await alice.post("/wallet/export", scope="wallet:export")
    assert response.status == 200
    assert authenticator.credentials[0].sign_count == 1
    # A second passkey needs credential:link, obtained with the first.
    await alice.prompt_step_up_auth("credential:link")
    second = SoftwareAuthenticator(origin=ORIGIN, algorithms=("RS256",))
    view = await alice.enroll("passkey", authenticator=second, alias="Backup key")
    assert view.alias == "Backup key"
    assert len(await alice.list_credentials()) == 2


async def test_refusals_over_http_are_problems_with_stable_codes(stack: Stack) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    alice = stack.client("alice")
    await alice.enroll("passkey", authenticator=authenticator)

    phished = SoftwareAuthenticator(origin="https://evil.example")
    phished.credentials = authenticator.credentials
    with pytest.raises(VerificationFailed, match="origin") as refused:
        await alice.verify_passkey_mfa(phished, requested_scopes=["wallet:export"])
    assert refused.value.code == "verification_failed"
    assert alice.state.error is not None

    # A malformed answer posted by hand: problem+json naming the field, never a 500.
    headers = {"Authorization": f"Bearer {TOKEN_OF['alice']}"}
    async with stack.http.post(f"{stack.base_url}/stepup/challenges", headers=headers,
                               json={"method": "passkey", "requestedScopes": ["wallet:export"]}) as resp:
        assert resp.status == 201
        challenge = await resp.json()
    assert challenge["data"]["publicKey"]["userVerification"] == "required"
    body = {"method": "passkey", "challengeId": challenge["challengeId"], "requestedScopes": ["wallet:export"],
            "response": {"credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}}}
    async with stack.http.post(f"{stack.base_url}/stepup/verify", headers=headers, json=body) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert problem["code"] == "invalid_response"
    assert "response.credential.response.clientDataJSON" in problem["detail"]


async def test_another_users_passkey_over_http(stack: Stack) -> None:
    alices = SoftwareAuthenticator(origin=ORIGIN)
    bobs = SoftwareAuthenticator(origin=ORIGIN)
    await stack.client("alice").enroll("passkey", authenticator=alices)
    await stack.client("bob").enroll("passkey", authenticator=bobs)

    class Discoverable:
        """Answers any request with bob's passkey, ignoring allowCredentials."""

        def create(self, public_key: Any) -> dict[str, Any]:
            raise AssertionError("not used")

        def get(self, public_key: Any) -> dict[str, Any]:
            return bobs.get(dict(public_key, allowCredentials=[]))

    alice = stack.client("alice")
    with pytest.raises(VerificationFailed, match="not registered to your account"):
        await alice.verify_passkey_mfa(Discoverable(), requested_scopes=["wallet:export"])
    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.exports == []
