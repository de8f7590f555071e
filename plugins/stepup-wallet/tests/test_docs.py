"""The documentation stays in step with the code: configuration examples load, every setting is
documented, and the sample messages, signatures and answers are what the plugin produces."""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import stepup_wallet.plugin
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import parse_message
from stepup_wallet.signatures import recover_signer
from stepup_wallet.verifier import WalletSettings

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import ChallengeRequest, EnrollmentCompletion, EnrollmentRequest, Principal, VerifyRequest
from stepup_core.plugins import get_plugin_manager
from stepup_core.serialization import unstructure
from stepup_core.service import StepUpService

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
DOC_PAGE = PLUGIN_ROOT.parents[1] / "docs" / "plugins" / "wallet.md"
README = PLUGIN_ROOT / "README.md"
#: The key of the documented samples (published with the EIP-191 vectors; never use it for value).
SAMPLE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
RANDOM_PARTS = [
    (re.compile(r"\b(enr|chl|cred)_[A-Za-z0-9_-]+"), r"\1_ID"),
    (re.compile(r"sut_[A-Za-z0-9_-]+"), "sut_TOKEN"),
    (re.compile(r"Nonce: [0-9a-f]{32}"), "Nonce: NONCE"),
]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def normalised(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    for pattern, replacement in RANDOM_PARTS:
        text = pattern.sub(replacement, text)
    return json.loads(text)


@pytest.mark.parametrize("document", [DOC_PAGE, README], ids=["docs-page", "readme"])
def test_configuration_examples_load(document: Path) -> None:
    [example] = blocks(document.read_text(encoding="utf-8"), "toml")
    config = config_from_mapping(tomllib.loads(example))
    settings = config.plugin_section("wallet", WalletSettings)
    assert settings.domain == "app.example.com" and settings.message_ttl == 300


def test_every_setting_is_documented() -> None:
    page = DOC_PAGE.read_text(encoding="utf-8")
    for field in attrs.fields(WalletSettings):
        assert f"| `{field.name}` |" in page, f"{field.name} is not in the settings table"
        assert f"{field.name} = " in page, f"{field.name} is not in the configuration example"


def test_sample_message_is_a_valid_eip4361_message(reference_siwe: Any) -> None:
    [text] = blocks(DOC_PAGE.read_text(encoding="utf-8"), "text")
    text = text.rstrip("\n")
    message = parse_message(text)
    assert reference_siwe.SiweMessage.from_message(message=text).prepare_message() == text
    assert message.resources == ("urn:stepup:scope:wallet:export",)


def test_sample_signatures_are_real() -> None:
    """The documented signatures recover to the documented address over the documented messages."""
    page = DOC_PAGE.read_text(encoding="utf-8")
    link, credential, challenge, _grant = (json.loads(b) for b in blocks(page, "json"))
    https = blocks(page, "http")
    link_signature = json.loads(https[1].split("\n", 1)[1])["response"]["signature"]
    verify_signature = re.search(r'"signature": "(0x[0-9a-f]{130})"', https[3])
    assert verify_signature is not None
    address = LocalKeySigner(SAMPLE_KEY).address
    assert recover_signer(link["data"]["message"], link_signature) == address == link["data"]["address"]
    assert recover_signer(challenge["data"]["message"], verify_signature.group(1)) == address
    assert credential["alias"] == f"{address[:6]}\u2026{address[-4:]}"
    [text] = blocks(page, "text")
    assert text.rstrip("\n") == challenge["data"]["message"]


async def test_sample_answers_match_what_the_service_produces() -> None:
    page = DOC_PAGE.read_text(encoding="utf-8")
    documented = [json.loads(b) for b in blocks(page, "json")]
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_wallet.plugin, name="wallet")
    config = config_from_mapping(
        {
            "store": "memory:",
            "secret_key": secrets.token_hex(32),
            "plugins": {"wallet": {"domain": "app.example.com", "uri": "https://app.example.com"}},
        }
    )
    service = await StepUpService.create(config, pm=pm, clock=ManualClock())
    try:
        principal = Principal("alice", "alice-session")
        signer = LocalKeySigner(SAMPLE_KEY)
        start = await service.begin_enrollment(
            principal, EnrollmentRequest(method="wallet", params={"address": signer.address.lower(), "chainId": 1})
        )
        signature = await signer.sign_message(start.data["message"])
        view = await service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response={"signature": signature})
        )
        challenge = await service.begin(
            principal,
            ChallengeRequest(method="wallet", credential_id=view.id, requested_scopes=("wallet:export",)),
        )
        message = challenge.data["message"]
        issued = await service.verify(
            principal,
            VerifyRequest(
                method="wallet",
                challenge_id=challenge.challenge_id,
                response={"message": message, "signature": await signer.sign_message(message)},
            ),
        )
    finally:
        await service.close()
    produced = [unstructure(start), unstructure(view), unstructure(challenge), unstructure(issued)]
    for doc, real in zip(documented, produced, strict=True):
        assert normalised(doc) == normalised(real)
