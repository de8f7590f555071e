"""Linking and stepping up over HTTP: stepup's aiohttp server on loopback, StepUpClient with this
plugin's client half and local-key signers. Every stepup answer is checked against the OpenAPI
document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import stepup_wallet.plugin
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import parse_message

from stepup_core.errors import ChallengeExpired, InvalidResponse, MethodNotAllowed, VerificationFailed
from stepup_core.models import Principal
from stepup_core.testing.stack import StepUpStack

#: The application's own route, which needs a fresh ``wallet:export`` step-up.
EXPORT = {"/wallet/export": "wallet:export"}


@pytest.fixture
async def stack() -> AsyncIterator[StepUpStack]:
    config = {"plugins": {"wallet": {"domain": "app.stepup.test", "uri": "https://app.stepup.test"}}}
    async with StepUpStack.start(plugins=[stepup_wallet.plugin], config=config, protected=EXPORT) as stack:
        yield stack


async def test_link_and_step_up_over_http(stack: StepUpStack) -> None:
    signer = LocalKeySigner.generate()
    alice = stack.client("alice")
    methods = await alice.methods()
    assert methods["wallet"].factor.value == "reauth" and methods["wallet"].interaction.value == "message"

    view = await alice.enroll("wallet", signer=signer)
    assert view.method == "wallet" and view.type == "eip155:1"
    assert view.alias == f"{signer.address[:6]}\u2026{signer.address[-4:]}"

    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.calls == []

    token = await alice.verify_wallet(signer, requested_scopes=["wallet:export"])
    assert token is not None, alice.state.error
    assert token.method == "wallet" and token.single_use
    done = await alice.post("/wallet/export", scope="wallet:export")
    assert done.status == 200 and done.json() == {"path": "/wallet/export", "scope": "wallet:export", "user": "alice"}
    assert stack.calls == ["/wallet/export"]
    # Single use: the next export needs a new signature.
    assert (await alice.post("/wallet/export", scope="wallet:export")).status == 401
    assert ("POST", "/stepup/verify", 200) in stack.validator.seen


async def test_challenge_over_http_carries_the_message(stack: StepUpStack) -> None:
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


async def test_wrong_wallet_is_recorded_not_raised(stack: StepUpStack) -> None:
    """verify_wallet records a failure in state.error, as the reference hook does."""
    signer, impostor = LocalKeySigner.generate(), LocalKeySigner.generate()
    alice = stack.client("alice")
    await alice.enroll("wallet", signer=signer)
    assert await alice.verify_wallet(impostor, requested_scopes=["wallet:export"]) is None
    assert isinstance(alice.state.error, VerificationFailed)
    assert "message is for wallet" in alice.state.error.message


async def test_refusals_over_http_are_problems_with_stable_codes(stack: StepUpStack) -> None:
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
    assert stack.calls == []


async def test_embedded_wallet_is_refused_over_http(stack: StepUpStack) -> None:
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
