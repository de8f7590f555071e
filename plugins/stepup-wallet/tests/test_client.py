"""The client half: WalletClientMethod with signers, and without one (paste a signature)."""

from __future__ import annotations

from typing import Any

import pytest
import stepup_wallet.plugin
from stepup_wallet.addresses import to_checksum_address
from stepup_wallet.client import LocalKeySigner, Signer, WalletClientMethod
from stepup_wallet.eip4361 import SiweMessage, format_message
from stepup_wallet.signatures import recover_signer

from stepup_core.client.method import ClientContext, ClientMethod
from stepup_core.client.prompters import ScriptedPrompter
from stepup_core.client.registry import client_methods
from stepup_core.errors import ServerError, VerificationFailed
from stepup_core.plugins import get_plugin_manager


def challenge_for(address: str) -> dict[str, Any]:
    message = SiweMessage(
        domain="app.example.com",
        address=to_checksum_address(address),
        statement="Confirm your identity to allow: wallet:export",
        uri="https://app.example.com",
        version="1",
        chain_id=1,
        nonce="0123456789abcdef0123456789abcdef",
        issued_at="2027-01-15T08:00:00.000Z",
        expiration_time="2027-01-15T08:05:00.000Z",
        request_id="chl_test",
        resources=("urn:stepup:scope:wallet:export",),
    )
    return {
        "challengeId": "chl_test",
        "method": "wallet",
        "interaction": "message",
        "data": {"message": format_message(message), "address": message.address},
    }


class CountingSigner:
    """An external signer, as a hardware wallet or WalletConnect bridge would be wrapped."""

    def __init__(self, inner: LocalKeySigner) -> None:
        self.inner = inner
        self.address = inner.address.lower()
        self.signed: list[str] = []

    async def sign_message(self, message: str) -> str:
        self.signed.append(message)
        return await self.inner.sign_message(message)


def test_the_plugin_registers_the_client_method() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_wallet.plugin, name="wallet")
    method = client_methods(pm)["wallet"]
    assert isinstance(method, ClientMethod) and isinstance(method, WalletClientMethod)
    assert method.package == "stepup-wallet"


async def test_answer_signs_with_the_signer_option() -> None:
    signer = LocalKeySigner.generate()
    challenge = challenge_for(signer.address)
    answer = await WalletClientMethod().answer(challenge, ClientContext(ScriptedPrompter(), {"signer": signer}))
    assert answer.response is not None and not answer.completed_elsewhere
    assert answer.response["message"] == challenge["data"]["message"]
    assert recover_signer(answer.response["message"], answer.response["signature"]) == signer.address


async def test_answer_uses_the_actor_and_external_signers() -> None:
    external = CountingSigner(LocalKeySigner.generate())
    assert isinstance(external, Signer)
    challenge = challenge_for(external.address)
    answer = await WalletClientMethod().answer(challenge, ClientContext(ScriptedPrompter(), actor=external))
    assert external.signed == [challenge["data"]["message"]]
    assert answer.response is not None
    assert recover_signer(answer.response["message"], answer.response["signature"]) == external.inner.address


async def test_signer_refuses_a_message_for_another_wallet() -> None:
    external = CountingSigner(LocalKeySigner.generate())
    challenge = challenge_for(LocalKeySigner.generate().address)
    with pytest.raises(VerificationFailed, match="message is for wallet"):
        await WalletClientMethod().answer(challenge, ClientContext(ScriptedPrompter(), {"signer": external}))
    assert external.signed == []


async def test_signer_refuses_text_that_is_not_an_eip4361_message() -> None:
    external = CountingSigner(LocalKeySigner.generate())
    challenge = {"challengeId": "chl_x", "data": {"message": "Transfer everything to 0xdead"}}
    with pytest.raises(VerificationFailed, match="refusing to sign"):
        await WalletClientMethod().answer(challenge, ClientContext(ScriptedPrompter(), {"signer": external}))
    assert external.signed == []


async def test_without_a_signer_the_person_pastes_a_signature() -> None:
    wallet = LocalKeySigner.generate()
    challenge = challenge_for(wallet.address)
    pasted = await wallet.sign_message(challenge["data"]["message"])
    prompter = ScriptedPrompter(codes=[f"  {pasted} "])
    answer = await WalletClientMethod().answer(challenge, ClientContext(prompter))
    assert answer.response == {"message": challenge["data"]["message"], "signature": pasted}
    assert challenge["data"]["message"] in prompter.told[0]


async def test_a_challenge_without_a_message_is_a_server_error() -> None:
    with pytest.raises(ServerError, match="no message"):
        await WalletClientMethod().answer({"challengeId": "chl_x", "data": {}}, ClientContext(ScriptedPrompter()))


async def test_a_signer_without_the_protocol_is_refused() -> None:
    with pytest.raises(TypeError, match="sign_message"):
        await WalletClientMethod().answer(
            challenge_for(LocalKeySigner.generate().address), ClientContext(ScriptedPrompter(), {"signer": "0xabc"})
        )


async def test_enrollment_params_and_answer() -> None:
    method = WalletClientMethod()
    signer = LocalKeySigner.generate()
    ctx = ClientContext(ScriptedPrompter(), {"signer": signer, "chain_id": 137})
    assert await method.enrollment_params(ctx) == {"address": signer.address, "chainId": 137}
    enrollment = challenge_for(signer.address)
    response = await method.answer_enrollment(enrollment, ctx)
    assert recover_signer(enrollment["data"]["message"], response["signature"]) == signer.address
    typed = await method.enrollment_params(ClientContext(ScriptedPrompter(codes=[" 0xAbC "])))
    assert typed == {"address": "0xAbC"}


def test_unattended_actor_is_a_fresh_local_key() -> None:
    method = WalletClientMethod()
    first, second = method.unattended(), method.unattended()
    assert isinstance(first, LocalKeySigner) and first.address != second.address
