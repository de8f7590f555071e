"""Talking to identity providers: discovery, keys, code exchange, user info, ID-token checks.

Imported when the method is first used, not when the plugin registers.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
import attrs
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from stepup_core.clock import Clock
from stepup_core.crypto import constant_time_equals
from stepup_core.errors import ConfigError, VerificationFailed

from .errors import ProviderUnavailable
from .settings import CLIENT_SECRET_BASIC, OIDC, ProviderConfig, SocialSettings, check_url

_ERROR_CODE = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749 error charset


def provider_error_code(value: object) -> str:
    """A provider's ``error`` value, safe to echo (RFC 6749 charset, bounded), else ``invalid``."""
    if isinstance(value, str) and _ERROR_CODE.match(value):
        return value
    return "invalid"


@attrs.frozen
class ProviderMetadata:
    """What the flow needs from a provider (its discovery document, or configuration)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    id_token_algorithms: tuple[str, ...] = ()


@attrs.frozen
class Identity:
    """Who signed in at the provider."""

    issuer: str
    subject: str
    claims: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.define
class _Cached:
    value: Any
    fetched_at: float


def add_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to whatever query it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class ProviderClient:
    """HTTP to the configured providers, with discovery documents and JWKS cached per provider."""

    def __init__(self, settings: SocialSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}

    # --- HTTP ---------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.http_timeout))

    async def _read(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        limit = self.settings.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ProviderUnavailable(f"{what} is larger than {limit} bytes", reason="response_too_large")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > limit:
                raise ProviderUnavailable(f"{what} is larger than {limit} bytes", reason="response_too_large")
        return bytes(body)

    @staticmethod
    def _json_object(body: bytes, what: str) -> dict[str, Any]:
        try:
            value = json.loads(body)
        except ValueError:
            raise ProviderUnavailable(f"{what} is not JSON", reason="malformed_response") from None
        if not isinstance(value, dict):
            raise ProviderUnavailable(f"{what} is not a JSON object", reason="malformed_response")
        return value

    async def _get_json(self, url: str, what: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            async with (
                self._session() as session,
                session.get(
                    url, headers={"Accept": "application/json", **(headers or {})}, allow_redirects=False
                ) as response,
            ):
                body = await self._read(response, what)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"could not fetch {what} from {url}: {type(exc).__name__}", reason="unreachable"
            ) from None
        if status != 200:
            raise ProviderUnavailable(f"{what} at {url} answered HTTP {status}", reason="http_status")
        return self._json_object(body, what)

    # --- metadata and keys ---------------------------------------------------------------

    async def metadata(self, name: str, provider: ProviderConfig, clock: Clock) -> ProviderMetadata:
        if provider.kind != OIDC:
            assert provider.authorization_endpoint and provider.token_endpoint
            return ProviderMetadata(
                issuer=provider.namespace(),
                authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint,
                userinfo_endpoint=provider.userinfo_endpoint,
            )
        now = clock.now()
        cached = self._metadata.get(name)
        if cached is not None and now - cached.fetched_at < self.settings.discovery_ttl:
            value: ProviderMetadata = cached.value
            return value
        assert provider.issuer is not None
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self._get_json(url, f"the discovery document of provider {name!r}")
        metadata = self._parse_discovery(name, provider, doc)
        self._metadata[name] = _Cached(metadata, now)
        return metadata

    @staticmethod
    def _parse_discovery(name: str, provider: ProviderConfig, doc: Mapping[str, Any]) -> ProviderMetadata:
        if doc.get("issuer") != provider.issuer:
            raise ProviderUnavailable(
                f"the discovery document of provider {name!r} names issuer {doc.get('issuer')!r}, "
                f"but the configured issuer is {provider.issuer!r}",
                reason="issuer_mismatch",
            )
        urls: dict[str, str | None] = {}
        for key, required in (
            ("authorization_endpoint", True),
            ("token_endpoint", True),
            ("jwks_uri", True),
            ("userinfo_endpoint", False),
        ):
            value = doc.get(key)
            if value is not None and not isinstance(value, str):
                value = ""
            try:
                check_url(value, f"providers.{name} discovery {key}", required=required)
            except ConfigError as exc:
                raise ProviderUnavailable(str(exc), reason="malformed_discovery") from None
            urls[key] = value
        algs = doc.get("id_token_signing_alg_values_supported")
        offered = tuple(a for a in algs if isinstance(a, str)) if isinstance(algs, list) else ()
        accepted = tuple(a for a in provider.algorithms if not offered or a in offered)
        if not accepted:
            raise ProviderUnavailable(
                f"provider {name!r} signs ID tokens with {list(offered)}, none of which is accepted "
                f"({', '.join(provider.algorithms)})",
                reason="no_common_algorithm",
            )
        return ProviderMetadata(
            issuer=str(doc["issuer"]),
            authorization_endpoint=str(urls["authorization_endpoint"]),
            token_endpoint=str(urls["token_endpoint"]),
            userinfo_endpoint=urls["userinfo_endpoint"],
            jwks_uri=urls["jwks_uri"],
            id_token_algorithms=accepted,
        )

    async def key_set(self, name: str, metadata: ProviderMetadata, clock: Clock, *, refresh: bool = False) -> KeySet:
        now = clock.now()
        cached = self._jwks.get(name)
        if cached is not None:
            age = now - cached.fetched_at
            fresh = age < self.settings.discovery_ttl
            if fresh and not (refresh and age >= self.settings.jwks_refresh_interval):
                keys: KeySet = cached.value
                return keys
        assert metadata.jwks_uri is not None
        doc = await self._get_json(metadata.jwks_uri, f"the signing keys (JWKS) of provider {name!r}")
        try:
            keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderUnavailable(
                f"the JWKS of provider {name!r} holds no usable key", reason="malformed_jwks"
            ) from None
        self._jwks[name] = _Cached(keys, now)
        return keys

    # --- the authorization code ----------------------------------------------------------

    async def exchange_code(
        self,
        name: str,
        provider: ProviderConfig,
        metadata: ProviderMetadata,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
    ) -> dict[str, Any]:
        """POST the code to the token endpoint (RFC 6749 4.1.3, RFC 7636 4.5); the token response."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if provider.client_secret is None:
            form["client_id"] = provider.client_id
        elif provider.token_endpoint_auth == CLIENT_SECRET_BASIC:
            # RFC 6749 2.3.1: both halves form-encoded before base64.
            pair = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = provider.client_id
            form["client_secret"] = provider.client_secret
        what = f"the token endpoint of provider {name!r}"
        try:
            async with (
                self._session() as session,
                session.post(metadata.token_endpoint, data=form, headers=headers, allow_redirects=False) as response,
            ):
                body = await self._read(response, what)
                status = response.status
                content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(f"could not reach {what}: {type(exc).__name__}", reason="unreachable") from None
        if content_type == "application/x-www-form-urlencoded":
            answer: dict[str, Any] = dict(parse_qsl(body.decode("utf-8", "replace")))
        else:
            try:
                answer = self._json_object(body, f"the answer of {what}")
            except ProviderUnavailable:
                if status != 200:
                    raise ProviderUnavailable(f"{what} answered HTTP {status}", reason="http_status") from None
                raise
        if "error" in answer or status != 200:
            error = provider_error_code(answer.get("error", "invalid"))
            raise VerificationFailed(
                f"provider {name!r} refused the authorization code ({error}); sign in again",
                provider=name,
                providerError=error,
            )
        return answer

    async def userinfo(self, name: str, metadata: ProviderMetadata, access_token: str) -> dict[str, Any]:
        assert metadata.userinfo_endpoint is not None
        return await self._get_json(
            metadata.userinfo_endpoint,
            f"the user info of provider {name!r}",
            headers={"Authorization": f"Bearer {access_token}"},
        )

    # --- ID tokens -----------------------------------------------------------------------

    async def verify_id_token(
        self,
        name: str,
        provider: ProviderConfig,
        metadata: ProviderMetadata,
        id_token: str,
        *,
        nonce: str,
        not_before: float,
        clock: Clock,
    ) -> Identity:
        """Check an ID token (OpenID Connect Core 3.1.3.7) and return who signed in.

        ``not_before``: the earliest acceptable ``auth_time`` (the challenge's creation minus
        the configured skew).
        """
        keys = await self.key_set(name, metadata, clock)
        try:
            token = jwt.decode(id_token, keys, algorithms=list(metadata.id_token_algorithms))
        except InvalidKeyIdError:
            # The provider may have rotated its keys since we fetched them.
            keys = await self.key_set(name, metadata, clock, refresh=True)
            token = self._decode(name, id_token, keys, metadata)
        except JoseError as exc:
            raise self._token_error(name, exc) from None
        claims = token.claims
        leeway = self.settings.clock_leeway
        registry = jwt.JWTClaimsRegistry(
            now=int(clock.now()),
            leeway=math.ceil(leeway),
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise VerificationFailed(f"the ID token from provider {name!r} has expired", provider=name) from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", None) or str(exc)
            raise VerificationFailed(
                f"the ID token from provider {name!r} has a missing or wrong claim: {claim}",
                provider=name,
                claim=str(claim),
            ) from None
        except JoseError as exc:
            raise self._token_error(name, exc) from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 and azp is None) or (azp is not None and azp != provider.client_id):
            raise VerificationFailed(
                f"the ID token from provider {name!r} was issued to another client (azp)",
                provider=name,
                claim="azp",
            )
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not constant_time_equals(token_nonce, nonce):
            raise VerificationFailed(
                f"the ID token from provider {name!r} does not belong to this sign-in (nonce)",
                provider=name,
                claim="nonce",
            )
        self._check_auth_time(name, provider, claims, not_before, clock.now() + leeway)
        return Identity(issuer=metadata.issuer, subject=claims["sub"], claims=claims)

    def _decode(self, name: str, id_token: str, keys: KeySet, metadata: ProviderMetadata) -> jwt.Token:
        try:
            return jwt.decode(id_token, keys, algorithms=list(metadata.id_token_algorithms))
        except JoseError as exc:
            raise self._token_error(name, exc) from None

    @staticmethod
    def _token_error(name: str, exc: JoseError) -> VerificationFailed:
        if isinstance(exc, BadSignatureError | InvalidKeyIdError):
            return VerificationFailed(
                f"the ID token from provider {name!r} is not signed by the provider's keys",
                provider=name,
                reason="bad_signature",
            )
        return VerificationFailed(
            f"the ID token from provider {name!r} is not acceptable: {exc.error}",
            provider=name,
            reason=exc.error,
        )

    @staticmethod
    def _check_auth_time(
        name: str, provider: ProviderConfig, claims: Mapping[str, Any], not_before: float, latest: float
    ) -> None:
        auth_time = claims.get("auth_time")
        if auth_time is None:
            if provider.require_auth_time:
                raise VerificationFailed(
                    f"provider {name!r} did not say when the person signed in (auth_time)",
                    provider=name,
                    claim="auth_time",
                )
            return
        if isinstance(auth_time, bool) or not isinstance(auth_time, int | float) or not math.isfinite(auth_time):
            raise VerificationFailed(
                f"the ID token from provider {name!r} has a malformed auth_time",
                provider=name,
                claim="auth_time",
            )
        if auth_time < not_before or auth_time > latest:
            raise VerificationFailed(
                f"the sign-in at provider {name!r} is older than this step-up; sign in again at the provider",
                provider=name,
                claim="auth_time",
            )
