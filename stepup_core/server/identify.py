"""Who is calling: the ``identify(request) -> Principal | None`` callables ``stepup serve`` uses.

stepup never owns passwords or sessions. Beside an existing application it trusts what that
application already issues:

- :class:`JwtIdentify`: a signed session JWT in ``Authorization: Bearer``, checked for
  signature, issuer, audience and expiry. The key is a PEM public key, an HMAC secret, or the
  keys a JWKS URL serves (fetched with aiohttp and cached). ``sub`` is the user, the
  ``session_claim`` (``sid`` by default) the session.
- :class:`StaticTokenIdentify`: fixed development tokens, each mapped to a principal.
- :class:`DevelopmentIdentify`: one random token made at start, for trying stepup out.

Each answers None when the request carries no bearer token (the server then answers 401
``unauthenticated``) and raises :class:`~stepup_core.errors.Unauthenticated` naming what is
wrong with a token it cannot accept.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..clock import Clock, SystemClock
from ..config import IdentifyConfig, PrincipalConfig
from ..crypto import constant_time_equals
from ..errors import ConfigError, Unauthenticated
from ..models import Principal

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from joserfc.jwk import Key, KeySet

#: ``identify(request)``: the request of any framework (aiohttp, Starlette, Django, Flask) or
#: stepup's own :class:`~stepup_core.server.http.Request`; each has ``headers.get(name)``.
Identify = Callable[[Any], Awaitable[Principal | None]]

#: Seconds a fetched JWKS is used before it is fetched again.
JWKS_CACHE_SECONDS = 300.0
#: A token naming a key id the cached JWKS lacks refetches it, at most this often.
JWKS_REFRESH_MIN_SECONDS = 30.0
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
JWT_LEEWAY_SECONDS = 30
MIN_HMAC_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 8192
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


def bearer_token(request: Any) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    header = str(request.headers.get("Authorization") or "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# --- static and development tokens ---------------------------------------------------------


def _digest(token: str) -> str:
    # A header that is not UTF-8 arrives with surrogate escapes: hash its bytes, never fail on them.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@attrs.define
class StaticTokenIdentify:
    """Fixed tokens mapped to principals (``[identify.tokens.<token>]`` in ``stepup.toml``).

    Only the SHA-256 of each token is kept; a presented token is hashed and compared in
    constant time. For development and tests: such tokens never expire.
    """

    _principals: dict[str, Principal] = attrs.field(factory=dict, alias="principals")

    @classmethod
    def from_mapping(cls, tokens: Mapping[str, PrincipalConfig | Principal]) -> StaticTokenIdentify:
        principals: dict[str, Principal] = {}
        for token, who in tokens.items():
            if len(token) < 16:
                raise ConfigError(f"identify.tokens: a token must be at least 16 characters (got {len(token)})")
            digest = _digest(token)
            if isinstance(who, Principal):
                principals[digest] = who
            else:
                principals[digest] = Principal(
                    user_id=who.user_id,
                    session_id=who.session_id or f"static-{digest[:16]}",
                    sign_in_credential_id=who.sign_in_credential_id,
                )
        return cls(principals=principals)

    async def __call__(self, request: Any) -> Principal | None:
        token = bearer_token(request)
        if token is None:
            return None
        presented = _digest(token[:MAX_TOKEN_LENGTH])
        found: Principal | None = None
        for digest, principal in self._principals.items():
            if constant_time_equals(digest, presented):
                found = principal
        if found is None:
            raise Unauthenticated("the bearer token is not one of the configured identify.tokens")
        return found


@attrs.define
class DevelopmentIdentify:
    """One random token for one development principal, made when the server starts."""

    token: str = attrs.field(factory=lambda: "dev_" + secrets.token_urlsafe(24))
    principal: Principal = attrs.field(factory=lambda: Principal(user_id="dev-user", session_id="dev-session"))

    async def __call__(self, request: Any) -> Principal | None:
        token = bearer_token(request)
        if token is None:
            return None
        if not constant_time_equals(_digest(token[:MAX_TOKEN_LENGTH]), _digest(self.token)):
            raise Unauthenticated("the bearer token is not this development server's token (printed at start)")
        return self.principal


# --- signed session JWTs -------------------------------------------------------------------


def _verification_key(cfg: IdentifyConfig) -> tuple[Key | None, tuple[str, ...]]:
    """The static key (None: keys come from the JWKS URL) and the algorithms it may verify."""
    configured = tuple(cfg.algorithms)
    asymmetric = tuple(a for a in configured if not a.startswith("HS"))
    if cfg.key and cfg.key.lstrip().startswith("-----BEGIN"):
        return _pem_key(cfg.key), asymmetric
    if cfg.key:
        return _hmac_key(cfg.key), tuple(a for a in configured if a.startswith("HS")) or HMAC_ALGORITHMS
    if not (cfg.jwks_url or "").startswith(("https://", "http://")):
        raise ConfigError("identify.jwks_url must be an http(s) URL")
    return None, asymmetric


def _hmac_key(secret: str) -> Key:
    from joserfc.jwk import OctKey

    if len(secret.encode()) < MIN_HMAC_SECRET_BYTES:
        raise ConfigError(
            f"identify.key: an HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes "
            f"(got {len(secret.encode())}); use a longer random secret"
        )
    key: Key = OctKey.import_key(secret.encode())
    return key


def _pem_key(pem: str) -> Key:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from joserfc.jwk import import_key

    try:
        public = load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"identify.key is not a PEM public key: {exc}") from None
    if isinstance(public, rsa.RSAPublicKey):
        return import_key(pem, "RSA")
    if isinstance(public, ec.EllipticCurvePublicKey):
        return import_key(pem, "EC")
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return import_key(pem, "OKP")
    raise ConfigError(f"identify.key: unsupported public key type {type(public).__name__}")


@attrs.define
class JwtIdentify:
    """Accept session JWTs signed by the application's identity provider.

    :param config: the ``[identify]`` table (``mode = "jwt"``).
    :param clock: decides expiry (and the JWKS cache).
    :param http: an aiohttp session for fetching the JWKS (one is made when needed).
    """

    config: IdentifyConfig
    clock: Clock = attrs.field(factory=SystemClock)
    http: ClientSession | None = None
    _static_key: Key | None = attrs.field(default=None, init=False)
    _algorithms: tuple[str, ...] = attrs.field(default=(), init=False)
    _jwks: KeySet | None = attrs.field(default=None, init=False)
    _jwks_fetched_at: float = attrs.field(default=float("-inf"), init=False)
    _jwks_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _owns_http: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        cfg = self.config
        if cfg.mode != "jwt":
            raise ConfigError("JwtIdentify needs identify.mode = 'jwt'")
        if any(a.lower() == "none" for a in cfg.algorithms):
            raise ConfigError("identify.algorithms must not include 'none'")
        if cfg.key and cfg.jwks_url:
            raise ConfigError("identify: give either key or jwks_url, not both")
        self._static_key, self._algorithms = _verification_key(cfg)
        if not self._algorithms:
            raise ConfigError(
                "identify.algorithms allows no algorithm for this key: "
                "list asymmetric ones (RS256, ES256, EdDSA) for a public key or JWKS, HS256 for a secret"
            )

    @property
    def algorithms(self) -> tuple[str, ...]:
        return self._algorithms

    async def close(self) -> None:
        if self.http is not None and self._owns_http:
            await self.http.close()
            self.http = None

    async def _fetch_jwks(self) -> KeySet:
        import aiohttp
        from joserfc.jwk import KeySet

        assert self.config.jwks_url is not None
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            self._owns_http = True
        try:
            async with self.http.get(self.config.jwks_url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise Unauthenticated(f"the JWKS at {self.config.jwks_url} answered {resp.status}")
                data = await resp.json(content_type=None)
            key_set: KeySet = KeySet.import_key_set(data)
            return key_set
        except Unauthenticated:
            raise
        except Exception as exc:  # noqa: BLE001 - any fetch or parse failure refuses the token
            raise Unauthenticated(f"could not load the JWKS at {self.config.jwks_url}: {exc}") from None

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        async with self._jwks_lock:
            now = self.clock.now()
            stale = now - self._jwks_fetched_at >= JWKS_CACHE_SECONDS
            may_refresh = refresh and now - self._jwks_fetched_at >= JWKS_REFRESH_MIN_SECONDS
            if self._jwks is None or stale or may_refresh:
                self._jwks = await self._fetch_jwks()
                self._jwks_fetched_at = now
            return self._jwks

    def _claims_registry(self) -> Any:
        from joserfc.jwt import JWTClaimsRegistry

        options: dict[str, Any] = {"sub": {"essential": True}, "exp": {"essential": True}}
        if self.config.issuer is not None:
            options["iss"] = {"essential": True, "value": self.config.issuer}
        if self.config.audience is not None:
            options["aud"] = {"essential": True, "value": self.config.audience}
        return JWTClaimsRegistry(now=lambda: int(self.clock.now()), leeway=JWT_LEEWAY_SECONDS, **options)

    async def principal_for(self, token: str) -> Principal:
        """The principal a JWT names, or :class:`Unauthenticated` saying why it is refused."""
        from joserfc import jwt
        from joserfc.errors import (
            ExpiredTokenError,
            InvalidClaimError,
            InvalidKeyIdError,
            JoseError,
            MissingClaimError,
        )

        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("the bearer token is too long")

        async def decode(refresh: bool) -> Any:
            key: Any = self._static_key if self._static_key is not None else await self._key_set(refresh=refresh)
            return jwt.decode(token, key, algorithms=list(self._algorithms))

        try:
            try:
                decoded = await decode(False)
            except InvalidKeyIdError:
                if self._static_key is not None:
                    raise
                decoded = await decode(True)  # the issuer may have rotated its keys
            self._claims_registry().validate(decoded.claims)
        except Unauthenticated:
            raise
        except ExpiredTokenError:
            raise Unauthenticated("the session token has expired") from None
        except MissingClaimError as exc:
            missing = str(exc.description).split(":", 1)[-1].strip().replace("'", "")
            raise Unauthenticated(f"the session token lacks required claims: {missing}") from None
        except InvalidClaimError as exc:
            raise Unauthenticated(f"the session token has a wrong claim: {exc.description}") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"the session token is not valid: {type(exc).__name__}: {exc}") from None
        claims = decoded.claims
        session = claims.get(self.config.session_claim)
        if not isinstance(session, str) or not session:
            raise Unauthenticated(
                f"the session token has no {self.config.session_claim!r} claim naming the session "
                "(set identify.session_claim to the claim your tokens use)"
            )
        sign_in: Any = None
        if self.config.sign_in_credential_claim:
            sign_in = claims.get(self.config.sign_in_credential_claim)
        return Principal(
            user_id=str(claims["sub"]),
            session_id=session,
            sign_in_credential_id=sign_in if isinstance(sign_in, str) else None,
            **authentication_claims(claims),
        )

    async def __call__(self, request: Any) -> Principal | None:
        token = bearer_token(request)
        if token is None:
            return None
        return await self.principal_for(token)


def authentication_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The session's ``acr``, ``amr`` and ``auth_time`` (OpenID Connect claims, RFC 9470) for a
    :class:`Principal`. A claim of the wrong type is left out: it can only ever make a sign-in
    count for less, never for more."""
    out: dict[str, Any] = {}
    acr = claims.get("acr")
    if isinstance(acr, str) and acr:
        out["acr"] = acr
    amr = claims.get("amr")
    if isinstance(amr, list) and all(isinstance(v, str) for v in amr):
        out["amr"] = tuple(amr)
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, int | float) and not isinstance(auth_time, bool) and auth_time > 0:
        out["auth_time"] = float(auth_time)
    return out


def identify_from_config(config: IdentifyConfig, *, clock: Clock | None = None) -> JwtIdentify | StaticTokenIdentify:
    """The identify callable ``[identify]`` describes."""
    if config.mode == "jwt":
        return JwtIdentify(config, clock=clock or SystemClock())
    if not config.tokens:
        raise ConfigError(
            "identify.mode = 'tokens' needs at least one [identify.tokens.\"<token>\"] table with a user_id"
        )
    return StaticTokenIdentify.from_mapping(config.tokens)
