"""EIP-4361 messages: our formatter against the reference parser, our parser against the
reference vectors, and the pieces (timestamps, EIP-55 checksums) they rest on."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import Any

import pytest
from stepup_wallet.addresses import AddressError, parse_address, shorten_address, to_checksum_address
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import (
    MessageFormatError,
    MessageRejected,
    SiweMessage,
    check_message,
    format_message,
    format_timestamp,
    parse_message,
    parse_timestamp,
    timestamp_seconds,
)

from stepup_core.models import ChallengeRequest, Principal
from stepup_core.service import StepUpService

ALICE = Principal("alice", "alice-session")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def reference_fields(parsed: Any) -> dict[str, Any]:
    """What the reference parser read, as plain values."""
    out: dict[str, Any] = {}
    for name in (
        "scheme",
        "domain",
        "address",
        "statement",
        "uri",
        "version",
        "chain_id",
        "nonce",
        "issued_at",
        "expiration_time",
        "not_before",
        "request_id",
        "resources",
    ):
        value = getattr(parsed, name)
        if value is not None and not isinstance(value, (int, list)):
            value = str(value)
        out[name] = value
    return out


def our_fields(message: SiweMessage) -> dict[str, Any]:
    return {
        "scheme": message.scheme,
        "domain": message.domain,
        "address": message.address,
        "statement": message.statement,
        "uri": message.uri,
        "version": message.version,
        "chain_id": message.chain_id,
        "nonce": message.nonce,
        "issued_at": message.issued_at,
        "expiration_time": message.expiration_time,
        "not_before": message.not_before,
        "request_id": message.request_id,
        "resources": list(message.resources) or None,
    }


def sample(**changes: Any) -> SiweMessage:
    fields: dict[str, Any] = {
        "domain": "app.example.com",
        "address": to_checksum_address("0x" + secrets.token_hex(20)),
        "statement": "Confirm your identity to allow: wallet:export, wallet:sign",
        "uri": "https://app.example.com/account",
        "version": "1",
        "chain_id": 1,
        "nonce": secrets.token_hex(16),
        "issued_at": "2027-01-15T08:00:00.000Z",
        "expiration_time": "2027-01-15T08:05:00.000Z",
        "request_id": "chl_" + secrets.token_urlsafe(16),
        "resources": ("urn:stepup:scope:wallet:export", "urn:stepup:scope:wallet:sign"),
    }
    fields.update(changes)
    return SiweMessage(**fields)


# --- our messages under the reference parser -------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"statement": None},
        {"resources": ()},
        {"request_id": None, "expiration_time": None},
        {"not_before": "2027-01-15T07:59:00.000Z"},
        {"scheme": "https"},
        {"domain": "localhost:8443", "uri": "http://localhost:8443/"},
        {"domain": "[::1]:8080", "uri": "http://[::1]:8080/stepup"},
        {"chain_id": 137, "issued_at": "2027-01-15T09:00:00+01:00"},
        {"statement": "Link this wallet to your account", "resources": ()},
    ],
    ids=lambda c: ",".join(c) or "full",
)
def test_formatted_messages_parse_under_the_reference_parser_as_issued(
    reference_siwe: Any, changes: dict[str, Any]
) -> None:
    message = sample(**changes)
    text = format_message(message)
    for abnf in (True, False):
        parsed = reference_siwe.SiweMessage.from_message(message=text, abnf=abnf)
        assert reference_fields(parsed) == our_fields(message), f"abnf={abnf}"
        assert parsed.prepare_message() == text
    assert parse_message(text) == message


async def test_issued_challenge_parses_under_the_reference_parser(
    service: StepUpService, flows: Any, signer: LocalKeySigner, reference_siwe: Any
) -> None:
    await flows.link(ALICE, signer)
    before = service.clock.now()
    challenge = await service.begin(
        ALICE, ChallengeRequest(method="wallet", requested_scopes=("wallet:export", "user:delete"))
    )
    text = challenge.data["message"]
    assert challenge.data["address"] == signer.address
    for abnf in (True, False):
        parsed = reference_siwe.SiweMessage.from_message(message=text, abnf=abnf)
        assert parsed.domain == "app.example.com"
        assert parsed.uri == "https://app.example.com/account"
        assert parsed.address == signer.address
        assert parsed.statement == "Confirm your identity to allow: wallet:export, user:delete"
        assert parsed.version == "1"
        assert parsed.chain_id == 1
        assert re.fullmatch(r"[0-9a-f]{32}", parsed.nonce), "nonce: 128 random bits, alphanumeric"
        assert parsed.request_id == challenge.challenge_id
        assert parsed.resources == ["urn:stepup:scope:wallet:export", "urn:stepup:scope:user:delete"]
        assert parsed.not_before is None and parsed.scheme is None
        issued = timestamp_seconds(str(parsed.issued_at))
        expires = timestamp_seconds(str(parsed.expiration_time))
        assert issued == pytest.approx(before, abs=0.001)
        assert 0 < expires - issued <= 300
        assert expires <= challenge.expires_at
    # The reference verifier accepts a wallet's signature over our message, bound as issued.
    signature = await signer.sign_message(text)
    reference = reference_siwe.SiweMessage.from_message(message=text)
    reference.verify(
        signature,
        domain="app.example.com",
        nonce=reference.nonce,
        timestamp=datetime.fromtimestamp(service.clock.now(), tz=timezone.utc),
    )


async def test_every_challenge_has_a_fresh_nonce(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    await flows.link(ALICE, signer)
    nonces = set()
    for _ in range(5):
        challenge = await flows.begin(ALICE)
        nonces.add(parse_message(challenge.data["message"]).nonce)
    assert len(nonces) == 5


# --- our parser against the reference vectors -------------------------------------------------


def test_parsing_positive_vectors(vectors: Any) -> None:
    cases = vectors("siwe/parsing_positive.json")
    assert len(cases) == 19
    for name, case in cases.items():
        parsed = parse_message(case["message"])
        got = our_fields(parsed)
        for key, expected in case["fields"].items():
            assert got[snake(key)] == expected, f"{name}: {key}"
        assert format_message(parsed) == case["message"], f"{name}: formats back to other bytes"


def test_parsing_negative_vectors(vectors: Any) -> None:
    cases = vectors("siwe/parsing_negative.json")
    assert len(cases) == 29
    for name, text in cases.items():
        with pytest.raises(MessageFormatError):
            parse_message(text)
            pytest.fail(f"accepted {name!r}")


def test_parsing_negative_objects(vectors: Any) -> None:
    cases = vectors("siwe/parsing_negative_objects.json")
    assert len(cases) == 18
    for name, fields in cases.items():
        kwargs = {snake(k): v for k, v in fields.items()}
        with pytest.raises((MessageFormatError, TypeError)):
            SiweMessage(**kwargs)
            pytest.fail(f"built {name!r}")


def test_parser_names_the_bad_field() -> None:
    message = sample()
    text = format_message(message)
    cases = {
        "version": text.replace("Version: 1", "Version: 2"),
        "nonce": re.sub(r"Nonce: \w+", "Nonce: short", text),
        "chain_id": text.replace("Chain ID: 1", "Chain ID: one"),
        "address": text.replace(message.address, message.address.lower()),  # lowercase: no EIP-55 checksum
        "message": text + "\n",  # no trailing newline in EIP-4361
        "issued_at": re.sub(r"Issued At: \S+", "Issued At: 2027-02-30T00:00:00Z", text),
        "statement": text.replace("wallet:sign\n", "wallet:sign \u2014 ok\n"),
    }
    for field, bad in cases.items():
        with pytest.raises(MessageFormatError) as info:
            parse_message(bad)
        assert info.value.field == field, f"{field}: {info.value}"


def test_formatter_refuses_fields_outside_the_grammar() -> None:
    with pytest.raises(MessageFormatError, match="statement"):
        sample(statement="two\nlines")
    with pytest.raises(MessageFormatError, match="nonce"):
        sample(nonce="1234567")
    with pytest.raises(MessageFormatError, match="domain"):
        sample(domain="https://app.example.com")
    with pytest.raises(MessageFormatError, match="resources"):
        sample(resources=("not a uri",))
    with pytest.raises(MessageFormatError, match="chain_id"):
        sample(chain_id=True)


# --- checks ------------------------------------------------------------------------------------


def test_check_message_applies_window_domain_and_nonce() -> None:
    message = sample(not_before="2027-01-15T07:59:00.000Z")
    issued = timestamp_seconds(message.issued_at)
    check_message(message, now=issued, domain="app.example.com", nonce=message.nonce)
    expectations = [
        ({"now": issued + 300}, "expired"),
        ({"now": issued - 61}, "not_yet_valid"),
        ({"now": issued, "domain": "evil.example.com"}, "domain_mismatch"),
        ({"now": issued, "nonce": "0" * 32}, "nonce_mismatch"),
    ]
    for kwargs, reason in expectations:
        with pytest.raises(MessageRejected) as info:
            check_message(message, **kwargs)
        assert info.value.reason == reason


# --- timestamps and addresses --------------------------------------------------------------------


def test_timestamps() -> None:
    assert format_timestamp(1_800_000_000.0) == "2027-01-15T08:00:00.000Z"
    assert format_timestamp(1_800_000_000.9999) == "2027-01-15T08:00:00.999Z"
    assert timestamp_seconds("2027-01-15T09:00:00+01:00") == 1_800_000_000.0
    assert timestamp_seconds("2027-01-15T08:00:00.5Z") == 1_800_000_000.5
    for bad in ("2022-02-31T17:09:38.578Z", "2027-01-15 08:00:00Z", "2027-01-15T08:00:60Z", "2027-01-15T08:00:00"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_checksum_matches_eip55_and_eth_utils() -> None:
    from eth_utils import to_checksum_address as reference

    # The examples in EIP-55 itself.
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert to_checksum_address(address.lower()) == address
    for _ in range(100):
        raw = "0x" + secrets.token_hex(20)
        assert to_checksum_address(raw) == reference(raw)


def test_parse_address() -> None:
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert parse_address(good.lower()) == good
    assert parse_address("0x" + good[2:].upper()) == good
    with pytest.raises(AddressError, match="checksum"):
        parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")
    for bad in (None, 42, "", "0x123", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x" + "g" * 40):
        with pytest.raises(AddressError):
            parse_address(bad)
    assert shorten_address(good) == "0x5aAe\u2026eAed"
