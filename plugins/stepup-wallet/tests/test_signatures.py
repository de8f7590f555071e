"""EIP-191 ``personal_sign`` recovery and the SIWE verification vectors, through this plugin's
own code (recover_signer, parse_message, check_message)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from stepup_wallet.client import LocalKeySigner, Signer
from stepup_wallet.eip4361 import (
    MessageFormatError,
    MessageRejected,
    SiweMessage,
    check_message,
    format_message,
    parse_message,
    timestamp_seconds,
)
from stepup_wallet.signatures import parse_signature, recover_signer

from stepup_core.errors import InvalidResponse, VerificationFailed

#: "Now" for vectors that give no time: inside every positive vector's window.
VECTOR_NOW = timestamp_seconds("2027-01-15T08:00:00Z")


def vector_message(case: dict[str, Any]) -> str | bytes:
    message = case["message"]
    return message["text"] if "text" in message else bytes.fromhex(message["hex"][2:])


def vector_signature(case: dict[str, Any]) -> str | bytes:
    if "signature" in case:
        return str(case["signature"])
    vrs = case["vrs"]
    return bytes.fromhex(vrs["r"][2:]) + bytes.fromhex(vrs["s"][2:]) + bytes([vrs["v"]])


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# --- EIP-191 -----------------------------------------------------------------------------------


def test_eip191_vectors_recover_as_listed(vectors: Any) -> None:
    cases = vectors("eip191_personal_sign.json")["signature_vectors"]
    assert len(cases) == 7
    for case in cases:
        recovered = recover_signer(vector_message(case), vector_signature(case))
        assert recovered == case["expected_address"], case["id"]


def test_eip191_vectors_fail_for_a_changed_message(vectors: Any) -> None:
    for case in vectors("eip191_personal_sign.json")["signature_vectors"]:
        message = vector_message(case)
        changed = message + " " if isinstance(message, str) else message[:-1] + bytes([message[-1] ^ 1])
        assert recover_signer(changed, vector_signature(case)) != case["expected_address"], case["id"]


def test_hex_looking_text_is_signed_as_text(vectors: Any) -> None:
    """A str message is its UTF-8 text; only bytes are taken raw (ethers-bytes-message)."""
    case = next(
        c for c in vectors("eip191_personal_sign.json")["signature_vectors"] if c["id"] == "ethers-bytes-message"
    )
    assert recover_signer(case["message"]["hex"], case["signature"]) != case["expected_address"]


async def test_local_key_signer_reproduces_the_vectors(vectors: Any) -> None:
    for case in vectors("eip191_personal_sign.json")["signature_vectors"]:
        if "private_key" not in case or "text" not in case["message"]:
            continue
        signer = LocalKeySigner(case["private_key"])
        assert signer.address == case["expected_address"]
        assert await signer.sign_message(case["message"]["text"]) == case["signature"], case["id"]


async def test_local_key_signer() -> None:
    signer = LocalKeySigner.generate()
    assert isinstance(signer, Signer)
    assert LocalKeySigner.generate().address != signer.address
    signature = await signer.sign_message("hello")
    assert re.fullmatch(r"0x[0-9a-f]{130}", signature)
    assert recover_signer("hello", signature) == signer.address
    assert "private" not in repr(signer) and signer.address in repr(signer)


@pytest.mark.parametrize(
    ("signature", "complaint"),
    [
        ("0x" + "ab" * 64, "65 bytes"),
        ("0x" + "ab" * 66, "65 bytes"),
        ("0x" + "zz" * 65, "hexadecimal"),
        ("", "65 bytes"),
        ("0x" + "ab" * 64 + "1d", "v=29"),
        ("0x" + "ab" * 64 + "02", "v=2"),
        (b"\x01" * 64, "65 bytes"),
        (12345, "hex string"),
        (None, "hex string"),
    ],
)
def test_malformed_signatures_name_the_field(signature: Any, complaint: str) -> None:
    with pytest.raises(InvalidResponse) as info:
        parse_signature(signature)
    assert info.value.details["field"] == "signature"
    assert complaint in info.value.message


def test_signature_outside_the_curve_is_refused_not_crashed() -> None:
    zero = "0x" + "00" * 64 + "1b"
    with pytest.raises(VerificationFailed):
        recover_signer("hello", zero)


def test_both_recovery_id_conventions_are_accepted() -> None:
    signature = bytes.fromhex(
        "00515bc8fd32264e21ec0820e8c5123ed58c1195c9ea17cb018b1ad4073cc5a6"
        "0080f5dcec397a5a8c523082bfa41771568903aa554ec06ba8475ca9050fb7d5"
    )
    for v in (0, 27):
        assert recover_signer("10284", signature + bytes([v])) == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


# --- SIWE verification vectors ------------------------------------------------------------------


def _siwe_message(case: dict[str, Any]) -> SiweMessage:
    skip = {"signature", "time", "domainBinding", "matchNonce"}
    return SiweMessage(**{snake(k): v for k, v in case.items() if k not in skip})


def _verify(case: dict[str, Any]) -> None:
    """Our verification pipeline: format, parse back, check window and bindings, recover."""
    text = format_message(_siwe_message(case))
    message = parse_message(text)
    now = timestamp_seconds(case["time"]) if "time" in case else VECTOR_NOW
    check_message(message, now=now, domain=case.get("domainBinding"), nonce=case.get("matchNonce"))
    if recover_signer(text, case["signature"]) != message.address:
        raise VerificationFailed("the signature was made by another key")


def test_siwe_verification_positive(vectors: Any) -> None:
    cases = vectors("siwe/verification_positive.json")
    assert len(cases) == 4
    for name, case in cases.items():
        try:
            _verify(case)
        except Exception as exc:
            pytest.fail(f"{name}: {exc!r}")


EXPECTED_REFUSALS = {
    "expired message": MessageRejected,
    "domain binding": MessageRejected,
    "custom time": MessageRejected,
    "custom nonce": MessageRejected,
    "malformed signature": InvalidResponse,
    "wrong signature": VerificationFailed,
    "not yet valid": MessageRejected,
    "invalid issuedAt": MessageFormatError,
    "invalid notBefore": MessageFormatError,
    "invalid expirationTime": MessageFormatError,
}


def test_siwe_verification_negative(vectors: Any) -> None:
    cases = vectors("siwe/verification_negative.json")
    assert set(cases) == set(EXPECTED_REFUSALS)
    for name, case in cases.items():
        with pytest.raises(EXPECTED_REFUSALS[name]):
            _verify(case)
            pytest.fail(f"{name}: verified")


def test_smart_contract_wallet_signatures_do_not_verify_offline(vectors: Any) -> None:
    """EIP-1271 signatures need a chain call; plain recovery must never accept them."""
    cases = {**vectors("siwe/eip1271.json"), **vectors("siwe/siwe_py_extra_eip1271.json")}
    assert len(cases) == 3
    for name, case in cases.items():
        message = parse_message(case["message"])
        try:
            recovered = recover_signer(case["message"], case["signature"])
        except VerificationFailed:
            continue
        assert recovered != message.address, name
