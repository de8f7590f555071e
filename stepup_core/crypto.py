"""Secrets handling the core owns so no plugin gets it wrong: random values, keyed hashes,
constant-time comparison, and sealing secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets

import attrs
from cryptography.exceptions import InvalidTag
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


#: Key ids are 8 hex digits derived from the key itself (HKDF), so they name a key without
#: revealing anything about it and need no configuration.
KEY_ID_LENGTH = 8
#: Stands for "the key that wrote values from before key ids" (whichever was configured then).
LEGACY_KEY_ID = "legacy"
_HASH_FORMAT = re.compile(r"^([0-9a-f]{8})\.([0-9a-f]{64})$")
_LEGACY_HASH = re.compile(r"^[0-9a-f]{64}$")


def key_id(master: bytes) -> str:
    """The id of a secret key: 8 hex digits of HKDF-SHA256(key, info "stepup:key-id")."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_ID_LENGTH // 2, salt=None, info=b"stepup:key-id")
    return hkdf.derive(master).hex()


def key_id_of(value: str) -> str | None:
    """The key id a sealed value (``aesgcm:<id>:...``) or a keyed hash (``<id>.<hex>``) names;
    None for anything else, including values written before key ids existed."""
    if value.startswith("aesgcm:"):
        parts = value.split(":")
        return parts[1] if len(parts) == 3 and len(parts[1]) == KEY_ID_LENGTH else None
    match = _HASH_FORMAT.match(value)
    return match.group(1) if match else None


class SecretKeyMissing(ConfigError):
    """A stored value names a secret key that is not configured (removed before rotation)."""

    code = "secret_key_missing"


@attrs.define
class SecretKeys:
    """Keys derived (HKDF-SHA256) from the configured secret keys, one per purpose.

    ``master`` is the current key: every new seal and keyed hash uses it and carries its id.
    ``previous`` are older keys, only read: a value names the key it was made with, and reading
    uses that key (values written before key ids existed are tried against every key). See
    ``docs/operations.md`` ("Rotating the secret key").

    ``encrypting`` is False when no secret key was configured: the service then keys hashes
    with a development key kept in the store and ``seal`` stores secrets unencrypted (the server
    warns at start).
    """

    master: bytes
    encrypting: bool = True
    previous: tuple[bytes, ...] = ()
    _cache: dict[tuple[str, str], bytes] = attrs.field(factory=dict, init=False, repr=False)
    _by_id: dict[str, bytes] = attrs.field(factory=dict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for key in (self.master, *self.previous):
            kid = key_id(key)
            if kid in self._by_id:
                raise ConfigError(f"secret key {kid} is configured twice; list each key once")
            self._by_id[kid] = key

    @property
    def current_id(self) -> str:
        """The id of the key new values are written with."""
        return next(iter(self._by_id))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every configured key's id, the current one first."""
        return tuple(self._by_id)

    def _key(self, kid: str | None) -> tuple[str, bytes]:
        if kid is None:
            return self.current_id, self.master
        key = self._by_id.get(kid)
        if key is None:
            raise SecretKeyMissing(
                f"a stored value was written with secret key {kid}, which is not configured: add it back "
                "to secret_keys (after the current key) and run `stepup keys rotate`",
                keyId=kid,
            )
        return kid, key

    def derive(self, purpose: str, *, key_id: str | None = None) -> bytes:
        """The purpose's key under ``key_id`` (default: the current key)."""
        kid, master = self._key(key_id)
        cached = self._cache.get((kid, purpose))
        if cached is None:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"stepup:{purpose}".encode())
            cached = self._cache[(kid, purpose)] = hkdf.derive(master)
        return cached

    def _hmac(self, purpose: str, value: str | bytes, kid: str | None) -> str:
        data = value.encode() if isinstance(value, str) else value
        return hmac.new(self.derive(f"hash:{purpose}", key_id=kid), data, hashlib.sha256).hexdigest()

    def keyed_hash(self, purpose: str, value: str | bytes, *, key_id: str | None = None) -> str:
        """HMAC-SHA256 of ``value`` under the purpose's key, as ``<key id>.<hex>``. Store this,
        never the value. ``key_id`` picks an older key (to find a record hashed with it)."""
        kid, _ = self._key(key_id)
        return f"{kid}.{self._hmac(purpose, value, kid)}"

    def legacy_keyed_hashes(self, purpose: str, value: str | bytes) -> list[str]:
        """The bare hex hash of ``value`` under every configured key: how values were hashed
        before hashes carried a key id."""
        return [self._hmac(purpose, value, kid) for kid in self._by_id]

    def verify_keyed_hash(self, purpose: str, value: str | bytes, stored: str) -> bool:
        """Does ``stored`` (a :meth:`keyed_hash`) hash ``value``? Uses the key it names; a bare
        hex hash from before key ids is tried against every key. Constant time per comparison."""
        kid = key_id_of(stored)
        if kid is not None:
            return constant_time_equals(self.keyed_hash(purpose, value, key_id=kid), stored)
        if _LEGACY_HASH.match(stored):
            return any(constant_time_equals(h, stored) for h in self.legacy_keyed_hashes(purpose, value))
        return False

    def is_current(self, value: str) -> bool:
        """True when a sealed value or keyed hash was made with the current key."""
        return key_id_of(value) == self.current_id

    def seal(self, purpose: str, plaintext: bytes) -> str:
        """Protect a secret at rest (AES-256-GCM, the purpose as associated data), as
        ``aesgcm:<key id>:<nonce and ciphertext>``."""
        if not self.encrypting:
            return "plain:" + base64.urlsafe_b64encode(plaintext).decode()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.derive(f"seal:{purpose}")).encrypt(nonce, plaintext, purpose.encode())
        return f"aesgcm:{self.current_id}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, purpose: str, sealed: str) -> bytes:
        """The secret a :meth:`seal` protected, with the key it names (a value sealed before key
        ids is tried against every key). Raises on tampering and on a key that is not configured."""
        kind, _, body = sealed.partition(":")
        if kind == "plain":
            return base64.urlsafe_b64decode(body)
        if kind != "aesgcm":
            raise ValueError(f"unknown sealed format {kind!r}")
        kid, sep, rest = body.partition(":")
        if sep:
            raw = base64.urlsafe_b64decode(rest)
            return AESGCM(self.derive(f"seal:{purpose}", key_id=kid)).decrypt(raw[:12], raw[12:], purpose.encode())
        raw = base64.urlsafe_b64decode(body)
        for candidate in self._by_id:
            try:
                return AESGCM(self.derive(f"seal:{purpose}", key_id=candidate)).decrypt(
                    raw[:12], raw[12:], purpose.encode()
                )
            except InvalidTag:
                continue
        raise InvalidTag()

    def reseal(self, purpose: str, sealed: str) -> str | None:
        """``sealed`` sealed again under the current key, or None when it already is (or when
        there is no key to seal with: development mode)."""
        if not self.encrypting or self.is_current(sealed):
            return None
        return self.seal(purpose, self.unseal(purpose, sealed))
