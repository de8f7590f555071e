"""Transaction binding: the exact action a step-up authorises.

Details are a JSON object the application defines (amount, currency, payee, a transaction
hash...). They are canonicalised with the RFC 8785 JSON Canonicalization Scheme (the
``rfc8785`` package), so two encodings of the same object (keys in another order, other white
space, ``120.0`` and ``120``) give the same bytes, and hashed with SHA-256. The hash travels as
unpadded base64url (43 characters); :func:`hash_uri` spells it as an RFC 6920 ``ni`` URI.

The summary a person reads ("Approve 120.00 EUR to ACME Ltd") is built on the server, from the
details, by the application's ``stepup_transaction_summary`` hook, or else by
:func:`default_summary`, which names every detail. It is never taken from the client: a page
that could choose the words beside the code could show one payment and bind another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import pluggy
import rfc8785

from .errors import InvalidTransaction, PluginError, TransactionMismatch
from .models import Challenge, Transaction

#: The canonical form of a transaction's details may be at most this many bytes.
MAX_TRANSACTION_BYTES = 4096
#: A summary is one line of at most this many characters.
MAX_SUMMARY_LENGTH = 200
#: The hash algorithm, as RFC 6920 names it.
HASH_ALGORITHM = "sha-256"
NI_PREFIX = f"ni:///{HASH_ALGORITHM};"


def canonical_form(details: object, field: str = "transaction") -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``details``.

    :raises InvalidTransaction: (naming ``field``) unless ``details`` is a non-empty JSON object
        whose canonical form fits :data:`MAX_TRANSACTION_BYTES`, with only JSON values (strings,
        numbers that are IEEE 754 doubles and integers within +-2**53, booleans, null, arrays,
        objects with string keys).
    """
    if not isinstance(details, Mapping):
        raise InvalidTransaction(
            f"{field} must be a JSON object of the action's details, not {type(details).__name__}", field=field
        )
    if not details:
        raise InvalidTransaction(f"{field} must hold at least one detail of the action", field=field)
    try:
        canonical = rfc8785.dumps(details)
    except rfc8785.IntegerDomainError:
        raise InvalidTransaction(
            f"{field} holds an integer beyond 2**53, which JSON cannot carry exactly: send it as a string",
            field=field,
        ) from None
    except rfc8785.CanonicalizationError as exc:
        raise InvalidTransaction(f"{field} cannot be canonicalised (RFC 8785): {exc}", field=field) from None
    except RecursionError:
        raise InvalidTransaction(f"{field} is nested too deeply", field=field) from None
    if len(canonical) > MAX_TRANSACTION_BYTES:
        raise InvalidTransaction(
            f"{field} is {len(canonical)} bytes in canonical form; the limit is {MAX_TRANSACTION_BYTES}", field=field
        )
    return canonical


#: The integers RFC 8785 (I-JSON) carries exactly.
_SAFE_INTEGER = 2**53 - 1


def _number(text: str) -> int | float:
    # A float with an integral value canonicalises to digits (1e16 -> 10000000000000000):
    # read such digits back as the float they were, so they canonicalise again the same way.
    value = int(text)
    return value if -_SAFE_INTEGER <= value <= _SAFE_INTEGER else float(text)


def read_canonical(canonical: bytes) -> dict[str, Any]:
    """Canonical bytes read back: the same object, its keys in canonical order, numbers that
    canonicalise to the same text again."""
    value: dict[str, Any] = json.loads(canonical, parse_int=_number)
    return value


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def digest_of(canonical: bytes) -> str:
    """The transaction hash of canonical bytes: unpadded base64url of their SHA-256."""
    return _b64url(hashlib.sha256(canonical).digest())


def transaction_hash(details: object, field: str = "transaction") -> str:
    """The hash ``details`` bind to (see :func:`canonical_form` for what is refused)."""
    return digest_of(canonical_form(details, field))


def hash_bytes(digest: str) -> bytes:
    """The 32 bytes of a transaction hash (the base64url text :func:`transaction_hash` returns)."""
    raw = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
    if len(raw) != hashlib.sha256().digest_size:
        raise ValueError("a transaction hash is 32 bytes")
    return raw


def hash_uri(digest: str) -> str:
    """The hash as an RFC 6920 named-information URI: ``ni:///sha-256;<base64url>``."""
    return NI_PREFIX + digest


def clean_line(text: str) -> str:
    """``text`` as one line a person can trust: control and format characters removed (a
    right-to-left override could show ``100`` for ``001``), runs of white space made one space."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("Z") or char in "\t\n\r\x0b\x0c":
            kept.append(" ")
        elif not category.startswith("C"):
            kept.append(char)
    return " ".join("".join(kept).split())


def _shorten(text: str, limit: int = MAX_SUMMARY_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return rfc8785.dumps(value).decode("utf-8")


def default_summary(details: Mapping[str, Any]) -> str:
    """Every detail, in canonical key order: ``Approve amount 120.00, currency EUR, payee ACME Ltd``.

    Strings appear as they are, other values as canonical JSON; the line is cut to
    :data:`MAX_SUMMARY_LENGTH` characters (the hash still covers everything). Applications
    with details a person cannot read like this supply ``stepup_transaction_summary``.
    """
    ordered = read_canonical(rfc8785.dumps(details))
    parts = [f"{clean_line(str(key))} {clean_line(_render(value))}".strip() for key, value in ordered.items()]
    return _shorten(clean_line("Approve " + ", ".join(parts)))


def summarize(pm: pluggy.PluginManager, scopes: Sequence[str], details: Mapping[str, Any]) -> str:
    """The summary of ``details`` for a step-up to ``scopes``: the first
    ``stepup_transaction_summary`` answer, else :func:`default_summary`.

    :raises PluginError: when a hook answers something that is not a non-empty line of at most
        :data:`MAX_SUMMARY_LENGTH` characters (once control characters are removed).
    """
    answer = pm.hook.stepup_transaction_summary(scopes=tuple(scopes), transaction=dict(details))
    if answer is None:
        return default_summary(details)
    if not isinstance(answer, str):
        raise PluginError(f"stepup_transaction_summary answered a {type(answer).__name__}, not a string")
    line = clean_line(answer)
    if not line or len(line) > MAX_SUMMARY_LENGTH:
        raise PluginError(
            f"stepup_transaction_summary must answer one line of 1 to {MAX_SUMMARY_LENGTH} characters, got {len(line)}"
        )
    return line


def bind(pm: pluggy.PluginManager, scopes: Sequence[str], details: object, field: str = "transaction") -> Transaction:
    """A :class:`~stepup_core.models.Transaction` for ``details``: validated, hashed, summarised.

    The details kept are the canonical form read back, so what is stored and echoed is exactly
    what was hashed.
    """
    canonical = canonical_form(details, field)
    ordered = read_canonical(canonical)
    return Transaction(hash=digest_of(canonical), summary=summarize(pm, scopes, ordered), details=ordered)


def binding_hash(transaction: Transaction | None, challenge: Challenge | None) -> str | None:
    """The hash a grant is bound to: the given transaction's, else its challenge's, else None."""
    bound = transaction or (challenge.transaction if challenge is not None else None)
    return bound.hash if bound is not None else None


def audit_details(transaction: Transaction | str | None) -> dict[str, Any]:
    """What an audit event records of a binding (a transaction, or its hash): its hash, or
    nothing for an unbound step-up."""
    digest = transaction.hash if isinstance(transaction, Transaction) else transaction
    return {"transactionHash": digest} if digest else {}


def ensure_same_transaction(bound: Transaction | None, details: object, challenge_id: str) -> None:
    """A verification may repeat the details its challenge was issued for (then they must have
    the same canonical form) or leave them out; it cannot add details to a challenge issued
    without. :class:`~stepup_core.errors.TransactionMismatch` otherwise."""
    if details is None:
        return
    if bound is None:
        raise TransactionMismatch(
            "this challenge was issued without transaction details; start a challenge with them",
            challengeId=challenge_id,
        )
    if transaction_hash(details) != bound.hash:
        raise TransactionMismatch(
            "the transaction details differ from those this challenge was issued for; "
            "start a new challenge for these details",
            challengeId=challenge_id,
        )
