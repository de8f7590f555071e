"""Linking and stepping up over HTTP: stepup's aiohttp server on loopback, StepUpClient with this
plugin's client half and local-key signers. Every stepup answer is checked against the OpenAPI
document."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
import stepup_wallet.plugin
from aiohttp import web
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import parse_message

from stepup_core.client import ScriptedPrompter, StepUpClient
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import ChallengeExpired, InvalidResponse, MethodNotAllowed, VerificationFailed
from stepup_core.identify import StaticTokenIdentify
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, build_document, requires_scope, serve_app
from stepup_core.server.testing import ResponseValidator
from stepup_core.service import StepUpService

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
            self.base_url,
            TOKEN_OF[user],
            pm=self.pm,
            http=self.http,
            clock=self.clock,
            prompter=kwargs.pop("prompter", ScriptedPrompter()),
            **kwargs,
        )

    async def api(self, user: str, verb: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN_OF[user]}"}
        async with self.http.request(verb, f"{self.base_url}/stepup{path}", json=body, headers=headers) as response:
            return response.status, await response.json()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    clock = ManualClock()
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_wallet.plugin, name="wallet")
    config = config_from_mapping(
        {
            "store": "memory:",
            "secret_key": secrets.token_hex(32),
            "plugins": {"wallet": {"domain": "app.stepup.test", "uri": "https://app.stepup.test"}},
        }
    )
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


async def test_link_and_step_up_over_http(stack: Stack) -> None:
    signer = LocalKeySigner.generate()
    alice = stack.client("alice")
    methods = await alice.methods()
    assert methods["wallet"].factor.value == "reauth" and methods["wallet"].interaction.value == "message"

    view = await alice.enroll("wallet", signer=signer)
    assert view.method == "wallet" and view.type == "eip155:1"
    assert view.alias == f"{signer.address[:6]}\u2026{signer.address[-4:]}"

    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.exports == []

    token = await alice.verify_wallet(signer, requested_scopes=["wallet:export"])
    assert token is not None, alice.state.error
    assert token.method == "wallet" and token.single_use
    done = await alice.post("/wallet/export", scope="wallet:export")
    assert done.status == 200 and done.json() == {"exported": True}
    assert stack.exports == ["exported"]
    # Single use: the next export needs a new signature.
    assert (await alice.post("/wallet/export", scope="wallet:export")).status == 401
    assert ("POST", "/stepup/verify", 200) in stack.validator.seen


async def test_challenge_over_http_carries_the_message(stack: Stack) -> None:
    signer = LocalKeySigner.generate()
    await stack.client("alice").enroll("wallet", signer=signer)
    status, body = await stack.api(
        "alice", "POST", "/challenges", {"method": "wallet", "requestedScopes": ["wallet:export"]}
    )
    assert status == 201, body
    message = parse_message(body["data"]["message"])
    assert body["data"]["address"] == signer.address == message.address
    assert message.request_id == body["challengeId"] and message.domain == "app.stepup.test"
    assert message.resources == ("urn:stepup:scope:wallet:export",)


async def test_wrong_wallet_is_recorded_not_raised(stack: Stack) -> None:
    """verify_wallet records a failure in state.error, as the reference hook does."""
    signer, impostor = LocalKeySigner.generate(), LocalKeySigner.generate()
    alice = stack.client("alice")
    await alice.enroll("wallet", signer=signer)
    assert await alice.verify_wallet(impostor, requested_scopes=["wallet:export"]) is None
    assert isinstance(alice.state.error, VerificationFailed)
    assert "message is for wallet" in alice.state.error.message


async def test_refusals_over_http_are_problems_with_stable_codes(stack: Stack) -> None:
    signer, impostor = LocalKeySigner.generate(), LocalKeySigner.generate()
    await stack.client("alice").enroll("wallet", signer=signer)

    async def challenge() -> dict[str, Any]:
        status, body = await stack.api(
            "alice", "POST", "/challenges", {"method": "wallet", "requestedScopes": ["wallet:export"]}
        )
        assert status == 201, body
        return dict(body)

    async def verify(start: dict[str, Any], response: dict[str, Any]) -> tuple[int, Any]:
        return await stack.api(
            "alice", "POST", "/verify", {"method": "wallet", "challengeId": start["challengeId"], "response": response}
        )

    start = await challenge()
    message = start["data"]["message"]
    status, body = await verify(start, {"message": message, "signature": "0x1234"})
    assert (status, body["code"]) == (400, InvalidResponse.code)
    status, body = await verify(start, {"message": message, "signature": await impostor.sign_message(message)})
    assert (status, body["code"]) == (400, VerificationFailed.code)
    tampered = message.replace("wallet:export", "wallet:delete")
    status, body = await verify(start, {"message": tampered, "signature": await signer.sign_message(tampered)})
    assert (status, body["code"]) == (400, VerificationFailed.code)

    stack.clock.advance(301)
    status, body = await verify(start, {"message": message, "signature": await signer.sign_message(message)})
    assert (status, body["code"]) == (410, ChallengeExpired.code)
    assert stack.exports == []


async def test_embedded_wallet_is_refused_over_http(stack: Stack) -> None:
    from stepup_core.hookspecs import hookimpl
    from stepup_core.models import Credential, CredentialFormat, Factor

    class EmbeddedWallets:
        @hookimpl
        def stepup_user_credentials(self, principal: Principal) -> list[Credential]:
            return [
                Credential(
                    id="embedded-1",
                    user_id=principal.user_id,
                    method="wallet",
                    format=CredentialFormat.BLOCKCHAIN,
                    factor=Factor.REAUTH,
                    created_at=0.0,
                    identifier=LocalKeySigner.generate().address,
                    data={"walletProvider": "embeddedWallet"},
                    sign_in=True,
                )
            ]

    stack.pm.register(EmbeddedWallets(), name="embedded-wallets")
    try:
        status, body = await stack.api(
            "bob", "POST", "/challenges", {"method": "wallet", "requestedScopes": ["wallet:export"]}
        )
        assert (status, body["code"]) == (403, MethodNotAllowed.code)
        assert "embedded wallet" in body["detail"]
    finally:
        stack.pm.unregister(name="embedded-wallets")
