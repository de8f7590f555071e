"""Secrets handling the core owns so no plugin gets it wrong: random values, keyed hashes,
constant-time comparison, and sealing secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError

log = logging.getLogger("stepup")

TOKEN_PREFIX = "sut_"
MIN_SECRET_KEY_BYTES = 32


def random_id(prefix: str, nbytes: int = 16) -> str:
    """An unguessable identifier, e.g. ``chl_...`` for challenges."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def new_elevated_token() -> str:
    """``sut_`` + 256 random bits, URL-safe. The prefix lets secret scanners find leaked tokens."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of an elevated token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def decode_secret_key(value: str) -> bytes:
    """A configured secret key: base64 (url-safe or standard) or hex of at least 32 bytes."""
    raw: bytes | None = None
    for decode in (bytes.fromhex, base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = decode(value + ("=" * (-len(value) % 4) if decode is not bytes.fromhex else ""))
            break
        except ValueError:
            continue
    if raw is None or len(raw) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            "secret_key must be at least 32 random bytes, hex or base64 encoded; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return raw


@attrs.define
class SecretKeys:
    """Keys derived (HKDF-SHA256) from the configured secret key, one per purpose.

    ``encrypting`` is False when no secret key was configured: the service then keys hashes
    with a development key kept in the store and ``seal`` stores secrets unencrypted (the server
    warns at start).
    """

    master: bytes
    encrypting: bool = True
    _cache: dict[str, bytes] = attrs.field(factory=dict, init=False, repr=False)

    def derive(self, purpose: str) -> bytes:
        if purpose not in self._cache:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"stepup:{purpose}".encode())
            self._cache[purpose] = hkdf.derive(self.master)
        return self._cache[purpose]

    def keyed_hash(self, purpose: str, value: str | bytes) -> str:
        """HMAC-SHA256 of ``value`` under the purpose's key, hex. Store this, never the value."""
        data = value.encode() if isinstance(value, str) else value
        return hmac.new(self.derive(f"hash:{purpose}"), data, hashlib.sha256).hexdigest()

    def seal(self, purpose: str, plaintext: bytes) -> str:
        """Protect a secret at rest (AES-256-GCM, the purpose as associated data)."""
        if not self.encrypting:
            return "plain:" + base64.urlsafe_b64encode(plaintext).decode()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.derive(f"seal:{purpose}")).encrypt(nonce, plaintext, purpose.encode())
        return "aesgcm:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, purpose: str, sealed: str) -> bytes:
        kind, _, body = sealed.partition(":")
        raw = base64.urlsafe_b64decode(body)
        if kind == "plain":
            return raw
        if kind != "aesgcm":
            raise ValueError(f"unknown sealed format {kind!r}")
        return AESGCM(self.derive(f"seal:{purpose}")).decrypt(raw[:12], raw[12:], purpose.encode())
