"""Signed grants: the keys that sign them, rotation, and ``{prefix}/jwks.json``.

A scope policy with ``signed = true`` (time-bound scopes only) has its grants issued as JWTs
(ES256 or EdDSA, ``[grants] algorithm``) with ``iss``, ``sub``, ``sid``, ``scope``, ``exp``,
``iat``, ``jti``, ``acr``, ``amr`` and ``auth_time``, so services in any language can check them
with the published keys alone. The server itself still treats a JWT grant like any other token
(the store keeps its hash, with user, session and scopes), so it can be revoked, and refused
once its key is removed.

Keys live in the store (one record, the private halves sealed with the secret key), so every
instance signs with the same key. A key signs for ``[grants] key_rotation`` seconds; then the
next one replaces it, and the retired key stays published until the last token it signed has
expired (its retirement plus the longest signed TTL, plus a minute of leeway). :meth:`KeyRing.remove`
withdraws a key at once (a compromised key): its tokens stop working everywhere the JWKS is read.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .clock import Clock
from .config import StepUpConfig
from .crypto import SecretKeys
from .errors import StoreUnavailable
from .models import TokenBehavior
from .scopes import ScopePolicies
from .serialization import dumps, loads
from .store.base import Store

KEYS_RECORD = "signing-keys"
#: Seconds a retired key stays published beyond the last expiry of the tokens it signed.
PUBLISH_LEEWAY = 60.0
#: The JWT ``typ`` header of a signed grant.
GRANT_TYP = "stepup-grant+jwt"
_SEAL_PURPOSE = "signing-key"
_CAS_ATTEMPTS = 8


@attrs.frozen
class SigningKey:
    """One signing key as stored: the public JWK, the sealed private JWK, its life."""

    kid: str
    alg: str
    public: dict[str, Any]
    private: str
    created_at: float
    retired_at: float | None = None
    #: Published until then (None: while it is the current key).
    publish_until: float | None = None


def _generate(alg: str, kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from joserfc.jwk import ECKey, OKPKey

    parameters: Any = {"kid": kid, "alg": alg, "use": "sig"}
    key: Any
    if alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=parameters, private=True)
    else:
        key = OKPKey.generate_key("Ed25519", parameters=parameters, private=True)
    return key.as_dict(private=False), key.as_dict(private=True)


@attrs.define
class KeyRing:
    """The signing keys of one service (shared by every instance through the store).

    :param max_ttl: the longest TTL a signed grant may have (how long a retired key must stay
        published).
    """

    store: Store
    clock: Clock
    secrets: SecretKeys
    algorithm: str = "ES256"
    rotation: float = 7 * 86_400.0
    max_ttl: Callable[[], float] = lambda: 600.0
    _private: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)

    @classmethod
    def for_config(
        cls, store: Store, clock: Clock, secrets: SecretKeys, config: StepUpConfig, policies: ScopePolicies
    ) -> KeyRing:
        """The key ring ``[grants]`` describes; retired keys stay as long as a signed scope's TTL."""
        return cls(
            store,
            clock,
            secrets,
            algorithm=config.grants.algorithm,
            rotation=config.grants.key_rotation,
            max_ttl=policies.longest_signed_ttl,
        )

    def signer_for(self, policies: ScopePolicies, scopes: Iterable[str]) -> Callable[[dict[str, Any]], Any] | None:
        """:meth:`sign` when a grant for ``scopes`` is to be a JWT (every scope's policy says
        ``signed``, and the grant is time-bound: a single-use grant is never signed), else None."""
        scopes = tuple(scopes)
        behavior, _ = policies.token_shape(scopes)
        return self.sign if behavior is TokenBehavior.TIME_BOUND and policies.signed(scopes) else None

    async def stored(self) -> list[SigningKey]:
        """Every stored key, published or not yet pruned."""
        return (await self._load())[1]

    async def _load(self) -> tuple[str | None, list[SigningKey]]:
        raw = await self.store.get(KEYS_RECORD)
        return raw, ([] if raw is None else loads(raw, list[SigningKey]))

    async def _update(self, change: Callable[[list[SigningKey], float], list[SigningKey] | None]) -> list[SigningKey]:
        """Apply ``change`` to the stored keys atomically (compare-and-set, retried when another
        instance changed them first). ``change`` answers None to leave them as they are."""
        for _ in range(_CAS_ATTEMPTS):
            raw, keys = await self._load()
            now = self.clock.now()
            changed = change(keys, now)
            if changed is None:
                return keys
            if await self.store.compare_and_set(KEYS_RECORD, raw, dumps(changed), ttl=None):
                return changed
        raise StoreUnavailable("the signing keys kept changing under concurrent updates; try again")

    def _new_key(self, now: float) -> SigningKey:
        kid = secrets.token_hex(8)  # hex: a key id never starts with "-" (a command line would read an option)
        public, private = _generate(self.algorithm, kid)
        sealed = self.secrets.seal(_SEAL_PURPOSE, json.dumps(private).encode())
        return SigningKey(kid=kid, alg=self.algorithm, public=public, private=sealed, created_at=now)

    def _retire(self, keys: list[SigningKey], now: float) -> list[SigningKey]:
        until = now + self.max_ttl() + PUBLISH_LEEWAY
        kept = [k for k in keys if k.publish_until is None or k.publish_until > now]
        return [attrs.evolve(k, retired_at=now, publish_until=until) if k.retired_at is None else k for k in kept]

    @staticmethod
    def _current(keys: list[SigningKey]) -> SigningKey | None:
        live = [k for k in keys if k.retired_at is None]
        return max(live, key=lambda k: k.created_at) if live else None

    async def current(self) -> SigningKey:
        """The key that signs now; the next one replaces it once it is ``rotation`` seconds old."""

        def change(keys: list[SigningKey], now: float) -> list[SigningKey] | None:
            current = self._current(keys)
            if current is not None and now - current.created_at < self.rotation and current.alg == self.algorithm:
                return None
            return [*self._retire(keys, now), self._new_key(now)]

        current = self._current(await self._update(change))
        assert current is not None
        return current

    async def rotate(self) -> SigningKey:
        """Retire the current key now and sign with a new one."""
        keys = await self._update(lambda keys, now: [*self._retire(keys, now), self._new_key(now)])
        current = self._current(keys)
        assert current is not None
        return current

    async def remove(self, kid: str) -> bool:
        """Withdraw a key at once: it leaves the JWKS and its tokens are refused. True if it was there."""
        removed = False

        def change(keys: list[SigningKey], now: float) -> list[SigningKey] | None:
            nonlocal removed
            kept = [k for k in keys if k.kid != kid]
            removed = len(kept) != len(keys)
            return kept if removed else None

        await self._update(change)
        self._private.pop(kid, None)
        return removed

    async def published(self) -> list[SigningKey]:
        now = self.clock.now()
        _, keys = await self._load()
        return [k for k in keys if k.publish_until is None or k.publish_until > now]

    async def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set to publish: every key whose tokens may still be alive."""
        return {"keys": [dict(k.public) for k in sorted(await self.published(), key=lambda k: -k.created_at)]}

    async def is_published(self, kid: str) -> bool:
        return any(k.kid == kid for k in await self.published())

    def _private_key(self, key: SigningKey) -> Any:
        cached = self._private.get(key.kid)
        if cached is None:
            from joserfc.jwk import ECKey, OKPKey

            data = json.loads(self.secrets.unseal(_SEAL_PURPOSE, key.private))
            cached = (ECKey if key.alg == "ES256" else OKPKey).import_key(data)
            self._private[key.kid] = cached
        return cached

    async def sign(self, claims: dict[str, Any]) -> tuple[str, str]:
        """A JWT of ``claims`` signed by the current key; returns (token, key id)."""
        from joserfc import jwt
        from joserfc.errors import SecurityWarning

        key = await self.current()
        header = {"alg": key.alg, "kid": key.kid, "typ": GRANT_TYP}
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; stepup keeps the name
            # every verifier knows today (Ed25519 keys either way).
            warnings.simplefilter("ignore", SecurityWarning)
            token = jwt.encode(header, claims, self._private_key(key), algorithms=[key.alg])
        return token, key.kid


def grant_issuer(config: StepUpConfig, public_url: str | None) -> str:
    """The ``iss`` of signed grants: ``[grants] issuer``, else the public URL and the prefix,
    else ``urn:stepup:<app_name>``."""
    if config.grants.issuer:
        return config.grants.issuer
    if public_url:
        return public_url.rstrip("/") + config.server.prefix
    return f"urn:stepup:{config.app_name}"


def grant_claims(config: StepUpConfig, public_url: str | None) -> dict[str, Any]:
    """The claims a signed grant carries besides its own: ``iss`` (:func:`grant_issuer`), and
    ``aud`` when configured."""
    claims: dict[str, Any] = {"iss": grant_issuer(config, public_url)}
    if config.grants.audience:
        claims["aud"] = config.grants.audience
    return claims
