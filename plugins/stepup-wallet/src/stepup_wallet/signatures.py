"""EIP-191 ``personal_sign`` signatures: shape checks and signer recovery.

eth-account is imported inside :func:`recover_signer`, the first time a signature is checked.
"""

from __future__ import annotations

import re

from stepup_core.errors import InvalidResponse, VerificationFailed

SIGNATURE_BYTES = 65
#: Recovery ids: 0/1 (raw) or 27/28 (Ethereum's legacy offset); both are in use by wallets.
RECOVERY_IDS = frozenset({0, 1, 27, 28})
_HEX = re.compile(r"[0-9a-fA-F]*")


def parse_signature(signature: object, field: str = "signature") -> bytes:
    """The 65 bytes ``r || s || v`` of a signature given as hex (``0x`` optional) or bytes.

    :raises InvalidResponse: naming ``field`` when the value is not 65 bytes of hex or its
        recovery byte ``v`` is not 0, 1, 27 or 28.
    """
    if isinstance(signature, (bytes, bytearray)):
        raw = bytes(signature)
    elif isinstance(signature, str):
        digits = signature[2:] if signature[:2] in ("0x", "0X") else signature
        if not _HEX.fullmatch(digits):
            raise InvalidResponse(f"{field} must be hexadecimal (0x followed by 130 hex digits)", field=field)
        if len(digits) != 2 * SIGNATURE_BYTES:
            raise InvalidResponse(
                f"{field} must be {SIGNATURE_BYTES} bytes (130 hex digits), got {len(digits)} hex digits",
                field=field,
            )
        raw = bytes.fromhex(digits)
    else:
        raise InvalidResponse(f"{field} must be a hex string, got {type(signature).__name__}", field=field)
    if len(raw) != SIGNATURE_BYTES:
        raise InvalidResponse(f"{field} must be {SIGNATURE_BYTES} bytes, got {len(raw)}", field=field)
    if raw[64] not in RECOVERY_IDS:
        raise InvalidResponse(f"{field} has recovery byte v={raw[64]}; it must be 0, 1, 27 or 28", field=field)
    return raw


def recover_signer(message: str | bytes, signature: str | bytes) -> str:
    """The EIP-55 address whose key made ``signature`` over ``message`` with ``personal_sign``.

    A ``str`` message is signed as its UTF-8 text (even when it looks like hex); ``bytes`` are
    signed as they are.

    :raises InvalidResponse: the signature is malformed (see :func:`parse_signature`).
    :raises VerificationFailed: the signature recovers to no address (r or s out of range).
    """
    raw = parse_signature(signature)
    from eth_account import Account
    from eth_account.messages import encode_defunct

    signable = encode_defunct(text=message) if isinstance(message, str) else encode_defunct(primitive=message)
    try:
        address: str = Account.recover_message(signable, signature=raw)
    except Exception as exc:  # eth-keys raises several types for r or s out of range
        raise VerificationFailed("the signature is not a valid secp256k1 signature") from exc
    return address
