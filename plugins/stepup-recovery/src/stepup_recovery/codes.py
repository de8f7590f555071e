"""Recovery codes as pure functions: generating, formatting and normalising them.

A code is 10 characters from Crockford's base32 alphabet (digits and lower-case letters without
``i``, ``l``, ``o`` and ``u``), so 50 random bits, shown in two groups of five: ``7k2mq-x9c4d``.
Reading it back forgives what people do when they copy a code: any case, spaces, dashes,
full-width characters, and ``o``/``i``/``l`` typed for ``0``/``1``/``1``.
"""

from __future__ import annotations

import math
import secrets
import unicodedata

#: Crockford's base32: 32 symbols that are hard to confuse when read aloud or handwritten.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
CODE_LENGTH = 10
GROUP_LENGTH = 5
BITS_PER_CODE = CODE_LENGTH * int(math.log2(len(ALPHABET)))
#: Inputs longer than this are refused before any work is done.
MAX_INPUT_LENGTH = 64

_CONFUSABLE = str.maketrans({"o": "0", "i": "1", "l": "1"})
_ALLOWED = frozenset(ALPHABET)


def format_code(normalized: str) -> str:
    """``7k2mqx9c4d`` -> ``7k2mq-x9c4d``."""
    return "-".join(normalized[i : i + GROUP_LENGTH] for i in range(0, len(normalized), GROUP_LENGTH))


def generate_code() -> str:
    """One fresh code (50 bits from ``secrets``), grouped for reading."""
    return format_code("".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)))


def generate_codes(count: int) -> list[str]:
    """``count`` distinct fresh codes."""
    if count < 1:
        raise ValueError("count must be at least 1")
    codes: dict[str, None] = {}
    while len(codes) < count:
        codes[generate_code()] = None
    return list(codes)


def normalize_code(raw: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be one."""
    if len(raw) > MAX_INPUT_LENGTH:
        return None
    text = unicodedata.normalize("NFKC", raw).lower()
    text = "".join(ch for ch in text if not ch.isspace() and ch != "-")
    text = text.translate(_CONFUSABLE)
    if len(text) != CODE_LENGTH or not set(text) <= _ALLOWED:
        return None
    return text
