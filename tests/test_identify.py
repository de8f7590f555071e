"""identify: signed session JWTs (HMAC secret, PEM key, JWKS on loopback), static tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from stepup_core import errors
from stepup_core.clock import ManualClock
from stepup_core.config import IdentifyConfig, PrincipalConfig, config_from_mapping
from stepup_core.identify import (
    JWKS_REFRESH_MIN_SECONDS,
    DevelopmentIdentify,
    JwtIdentify,
    StaticTokenIdentify,
    identify_from_config,
)
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, serve_app
from stepup_core.service import StepUpService

ISSUER = "https://id.example.test"
AUDIENCE = "stepup-tests"
SECRET = "a-long-hmac-secret-for-session-tokens-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "sid": "session-7",
        "iat": int(clock.now()),
        "exp": int(clock.now()) + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hmac_token(clock: ManualClock, key: str = SECRET, alg: str = "HS256", **overrides: Any) -> str:
    return jwt.encode({"alg": alg}, _claims(clock, **overrides), OctKey.import_key(key.encode()))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hmac_identify(clock: ManualClock) -> JwtIdentify:
    return JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, audience=AUDIENCE, key=SECRET), clock=clock)


async def test_a_valid_hmac_session_token_names_user_and_session(
    hmac_identify: JwtIdentify, clock: ManualClock
) -> None:
    principal = await hmac_identify.principal_for(_hmac_token(clock))
    assert principal == Principal(user_id="user-42", session_id="session-7")
    assert hmac_identify.algorithms == ("HS256", "HS384", "HS512")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example.test"}, "wrong claim"),
        ({"aud": "another-app"}, "wrong claim"),
        ({"sub": None}, "lacks required claims: sub"),
        ({"exp": None}, "lacks required claims: exp"),
        ({"sid": None}, "no 'sid' claim"),
    ],
)
async def test_wrong_or_missing_claims_are_refused(
    hmac_identify: JwtIdentify, clock: ManualClock, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.Unauthenticated, match=message):
        await hmac_identify.principal_for(_hmac_token(clock, **overrides))


async def test_expiry_follows_the_injected_clock(hmac_identify: JwtIdentify, clock: ManualClock) -> None:
    token = _hmac_token(clock)
    clock.advance(300 + 29)  # within the leeway
    assert (await hmac_identify.principal_for(token)).user_id == "user-42"
    clock.advance(2)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        await hmac_identify.principal_for(token)


async def test_a_token_signed_with_another_key_or_tampered_is_refused(
    hmac_identify: JwtIdentify, clock: ManualClock
) -> None:
    with pytest.raises(errors.Unauthenticated, match="not valid"):
        await hmac_identify.principal_for(_hmac_token(clock, key="another-secret-of-the-same-decent-length-000"))
    header, payload, signature = _hmac_token(clock).split(".")
    forged_payload = jwt.encode({"alg": "HS256"}, _claims(clock, sub="admin"), OctKey.import_key(b"x" * 32))
    with pytest.raises(errors.Unauthenticated):
        await hmac_identify.principal_for(".".join([header, forged_payload.split(".")[1], signature]))
    unsigned = header.replace(header, "eyJhbGciOiJub25lIn0") + "." + payload + "."
    with pytest.raises(errors.Unauthenticated):
        await hmac_identify.principal_for(unsigned)


def test_configuration_mistakes_are_refused() -> None:
    with pytest.raises(errors.ConfigError, match="at least 32 bytes"):
        JwtIdentify(IdentifyConfig(mode="jwt", key="short"))
    with pytest.raises(errors.ConfigError, match="not a PEM public key"):
        JwtIdentify(IdentifyConfig(mode="jwt", key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"))
    with pytest.raises(errors.ConfigError, match="must not include 'none'"):
        JwtIdentify(IdentifyConfig(mode="jwt", key=SECRET, algorithms=("none",)))
    with pytest.raises(errors.ConfigError, match="needs at least one"):
        identify_from_config(IdentifyConfig(mode="tokens"))
    with pytest.raises(errors.ConfigError, match="at least 16 characters"):
        StaticTokenIdentify.from_mapping({"short": PrincipalConfig(user_id="u")})


async def test_a_pem_public_key_refuses_hmac_tokens_made_from_it(clock: ManualClock) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    identify = JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, audience=AUDIENCE, key=pem), clock=clock)
    assert "HS256" not in identify.algorithms
    signing = RSAKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    good = jwt.encode({"alg": "RS256"}, _claims(clock), signing)
    assert (await identify.principal_for(good)).session_id == "session-7"
    # Algorithm confusion: an HS256 token keyed with the public key's PEM text.
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(_claims(clock, sub="admin")).encode())
    )
    mac = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + _b64(mac)
    with pytest.raises(errors.Unauthenticated):
        await identify.principal_for(confused)


@attrs.define
class JwksServer:
    keys: list[ECKey]
    hits: int = 0

    def app(self) -> web.Application:
        async def jwks(request: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response(KeySet(list(self.keys)).as_dict())

        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", jwks)
        return app


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[JwksServer, str]]:
    server = JwksServer([ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)])
    async with serve_app(server.app()) as base_url:
        yield server, f"{base_url}/.well-known/jwks.json"


def _ec_token(key: ECKey, clock: ManualClock, **overrides: Any) -> str:
    return jwt.encode({"alg": "ES256", "kid": key.kid}, _claims(clock, **overrides), key)


async def test_jwks_is_fetched_once_cached_and_refetched_for_a_new_key(
    jwks: tuple[JwksServer, str], clock: ManualClock
) -> None:
    server, url = jwks
    identify = JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, audience=AUDIENCE, jwks_url=url), clock=clock)
    try:
        for _ in range(3):
            assert (await identify.principal_for(_ec_token(server.keys[0], clock))).user_id == "user-42"
        assert server.hits == 1
        # The issuer rotates its key: a token with the new kid makes one refetch...
        rotated = ECKey.generate_key("P-256", parameters={"kid": "k2"}, private=True)
        server.keys.append(rotated)
        clock.advance(JWKS_REFRESH_MIN_SECONDS)
        assert (await identify.principal_for(_ec_token(rotated, clock))).user_id == "user-42"
        assert server.hits == 2
        # ...but unknown kids cannot make it fetch again and again.
        stranger = ECKey.generate_key("P-256", parameters={"kid": "k3"}, private=True)
        for _ in range(3):
            with pytest.raises(errors.Unauthenticated):
                await identify.principal_for(_ec_token(stranger, clock))
        assert server.hits == 2
        # A known kid signed by a key that is not the issuer's is refused.
        impostor = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
        with pytest.raises(errors.Unauthenticated, match="not valid"):
            await identify.principal_for(_ec_token(impostor, clock))
    finally:
        await identify.close()


async def test_an_unreachable_jwks_refuses_the_token(clock: ManualClock) -> None:
    identify = JwtIdentify(IdentifyConfig(mode="jwt", jwks_url="http://127.0.0.1:9/jwks.json"), clock=clock)
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    try:
        with pytest.raises(errors.Unauthenticated, match="could not load the JWKS"):
            await identify.principal_for(_ec_token(key, clock))
    finally:
        await identify.close()


async def _check_status(base_url: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/stepup/check", json={"scope": "user:update"}, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_the_server_identifies_callers_through_each_mode(clock: ManualClock) -> None:
    service = await StepUpService.create(
        config_from_mapping({"store": "memory:", "secret_key": secrets.token_hex(32)}),
        pm=get_plugin_manager(load_entrypoints=False),
        clock=clock,
    )
    static_token = "static-dev-token-" + secrets.token_hex(8)
    development = DevelopmentIdentify()
    modes: list[tuple[Any, str, str]] = [
        (
            JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, audience=AUDIENCE, key=SECRET), clock=clock),
            f"Bearer {_hmac_token(clock)}",
            f"Bearer {_hmac_token(clock, iss='https://evil.example.test')}",
        ),
        (
            StaticTokenIdentify.from_mapping({static_token: PrincipalConfig(user_id="u1", session_id="s1")}),
            f"Bearer {static_token}",
            f"Bearer {static_token}x",
        ),
        (development, f"Bearer {development.token}", "Bearer dev_guess"),
    ]
    try:
        for identify, good, bad in modes:
            async with serve_app(build_app(service, identify)) as base_url:
                status, body = await _check_status(base_url, good)
                assert status == 200 and body["isRequired"] is True
                status, body = await _check_status(base_url, bad)
                assert status == 401 and body["code"] == "unauthenticated"
                status, body = await _check_status(base_url, None)
                assert status == 401 and body["code"] == "unauthenticated"
    finally:
        await service.close()
