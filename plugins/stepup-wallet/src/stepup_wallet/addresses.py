"""Ethereum account addresses: EIP-55 checksums, validation and display.

Only the Keccak-256 hash is needed, and ``eth_hash`` is imported when an address is first
checksummed, never when the plugin is registered.
"""

from __future__ import annotations

import re

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class AddressError(ValueError):
    """A value is not a usable Ethereum address; the message says why."""


def to_checksum_address(address: str) -> str:
    """The EIP-55 mixed-case form of a ``0x``-prefixed 20-byte hex address (any case in)."""
    if not isinstance(address, str) or not _HEX_ADDRESS.fullmatch(address):
        raise AddressError("an Ethereum address is 0x followed by 40 hexadecimal digits")
    from eth_hash.auto import keccak

    lower = address[2:].lower()
    digest = keccak(lower.encode("ascii")).hex()
    # EIP-55: a letter is upper case where the matching nibble of keccak256(lowercase hex) is >= 8.
    cased = (ch.upper() if int(nibble, 16) >= 8 else ch for ch, nibble in zip(lower, digest[:40], strict=True))
    return "0x" + "".join(cased)


def is_checksum_address(address: str) -> bool:
    """True when ``address`` is written exactly in its EIP-55 form."""
    try:
        return to_checksum_address(address) == address
    except AddressError:
        return False


def parse_address(value: object) -> str:
    """Validate an address a person typed or an application supplied; return its EIP-55 form.

    All-lowercase and all-uppercase hex carry no checksum and are accepted; mixed case must be a
    correct EIP-55 checksum, since a wrong one usually means a mistyped address.
    """
    if not isinstance(value, str):
        raise AddressError(f"an Ethereum address is a string, got {type(value).__name__}")
    checksummed = to_checksum_address(value)
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and value != checksummed:
        raise AddressError(
            f"{value} has an invalid EIP-55 checksum (mixed case that does not match); "
            "check the address for typing errors"
        )
    return checksummed


def shorten_address(address: str) -> str:
    """A display form: ``0x1234…abcd``."""
    return f"{address[:6]}\u2026{address[-4:]}"
