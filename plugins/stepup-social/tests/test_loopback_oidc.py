"""ID-token and exchange checks against a strict OpenID Connect provider on loopback.

The provider (``stepup_social.testing.LoopbackProvider``) enforces PKCE, single-use codes and
client authentication, and signs with joserfc; each test bends one thing (a foreign signing key,
an old ``auth_time``, a claim) and checks that no grant comes out of it.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from stepup_social.errors import ProviderUnavailable
from stepup_social.testing import LoopbackProvider, follow_authorization

from stepup_core import errors
from stepup_core.models import ChallengeStatus, EnrollmentRequest, Principal

ALICE = Principal("user-alice", "session-1")


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


@pytest.fixture
async def service(make_service: Any, loopback: LoopbackProvider) -> Any:
    return await make_service({"idp": loopback.provider_config()})


@pytest.fixture
async def linked(service: Any, link: Any) -> str:
    return await link(service, ALICE, follow_authorization, provider="idp")


async def step_up(service: Any, begin: Any) -> tuple[Any, dict[str, str]]:
    start = await begin(service, ALICE, "idp")
    return start, await follow_authorization(start.data["authorizationUrl"])


async def refused(service: Any, begin: Any, error: type[Exception] = errors.VerificationFailed) -> Any:
    start, query = await step_up(service, begin)
    with pytest.raises(error) as failure:
        await service.complete_callback("social", query)
    state = await service.challenge_status(ALICE, start.challenge_id)
    assert state.status is ChallengeStatus.FAILED and state.grant is None
    return failure.value


async def granted(service: Any, begin: Any) -> Any:
    start, query = await step_up(service, begin)
    await service.complete_callback("social", query)
    state = await service.challenge_status(ALICE, start.challenge_id)
    assert state.grant is not None
    return state.grant


async def test_success_with_pkce_enforced_by_the_provider(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, callback_url: str
) -> None:
    await granted(service, begin)
    exchange = loopback.token_requests[-1]
    assert exchange["redirect_uri"] == callback_url
    assert exchange["grant_type"] == "authorization_code"
    assert "client_secret" not in exchange  # client_secret_basic: the secret is in the header
    assert loopback.token_refusals == []


async def test_client_secret_post(make_service: Any, link: Any, begin: Any, clock: Any) -> None:
    provider = await LoopbackProvider(token_endpoint_auth="client_secret_post", clock=clock.now).start()
    try:
        service = await make_service({"idp": provider.provider_config()})
        await link(service, ALICE, follow_authorization, provider="idp")
        await granted(service, begin)
        assert provider.token_requests[-1]["client_secret"] == provider.client_secret
    finally:
        await provider.close()


async def test_access_denied_with_state(service: Any, linked: str, begin: Any, loopback: LoopbackProvider) -> None:
    loopback.authorize_error = "access_denied"
    failure = await refused(service, begin)
    assert failure.details["providerError"] == "access_denied"
    assert len(loopback.token_requests) == 1  # the linking exchange only: no code, no exchange


async def test_signature_by_a_key_outside_the_jwks_is_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider
) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": loopback.key.kid})
    loopback.signing_key = impostor
    failure = await refused(service, begin)
    assert failure.details["reason"] == "bad_signature"


async def test_unknown_key_id_refetches_the_jwks_once_then_refuses(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    before = loopback.jwks_fetches
    loopback.signing_key = ECKey.generate_key("P-256", auto_kid=True)
    clock.advance(61)  # past the JWKS refresh interval
    failure = await refused(service, begin)
    assert failure.details["reason"] == "bad_signature"
    assert loopback.jwks_fetches == before + 1


async def test_rotated_keys_are_picked_up(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    loopback.key = ECKey.generate_key("P-256", auto_kid=True)  # the provider rotates its key
    clock.advance(61)
    await granted(service, begin)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda claims: f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{b64(json.dumps(claims))}.",
            id="alg-none",
        ),
        pytest.param(
            lambda claims: jwt.encode(
                {"alg": "HS256"}, claims, OctKey.import_key("stepup-test-secret"), algorithms=["HS256"]
            ),
            id="hs256-with-the-client-secret",
        ),
        pytest.param(lambda claims: "not.a.jwt", id="garbage"),
    ],
)
async def test_unsigned_or_symmetric_tokens_are_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, make_token: Any
) -> None:
    loopback.raw_id_token = make_token
    await refused(service, begin)


@pytest.mark.parametrize(
    ("claims", "claim"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "another-client"}, "aud"),
        ({"aud": ["another-client", "stepup-test-client"]}, "azp"),
        ({"aud": ["another-client", "stepup-test-client"], "azp": "another-client"}, "azp"),
        ({"azp": "another-client"}, "azp"),
        ({"nonce": None}, "nonce"),
        ({"nonce": "a-nonce-from-elsewhere"}, "nonce"),
        ({"sub": None}, "sub"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
    ],
)
async def test_wrong_claims_are_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, claims: dict[str, Any], claim: str
) -> None:
    loopback.claims = claims
    failure = await refused(service, begin)
    assert failure.details.get("claim") == claim


async def test_several_audiences_with_our_azp_are_accepted(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider
) -> None:
    loopback.claims = {"aud": ["another-client", "stepup-test-client"], "azp": "stepup-test-client"}
    await granted(service, begin)


async def test_expired_id_token_is_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    loopback.claims = {"exp": int(clock.now()) - 61}  # beyond the 60 s leeway
    failure = await refused(service, begin)
    assert "expired" in str(failure)


async def test_id_token_from_the_future_is_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    loopback.claims = {"iat": int(clock.now()) + 600}
    await refused(service, begin)


async def test_stale_auth_time_is_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    loopback.auth_time = clock.now() - 31  # just past the 30 s skew before the challenge
    failure = await refused(service, begin)
    assert failure.details["claim"] == "auth_time"


async def test_auth_time_in_the_future_is_refused(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    loopback.auth_time = clock.now() + 3600
    await refused(service, begin)


async def test_auth_time_skew_is_configurable(
    make_service: Any, link: Any, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    service = await make_service({"idp": loopback.provider_config()}, auth_time_skew=300)
    await link(service, ALICE, follow_authorization, provider="idp")
    loopback.auth_time = clock.now() - 200
    await granted(service, begin)


async def test_missing_auth_time_is_accepted_unless_required(
    make_service: Any, link: Any, begin: Any, loopback: LoopbackProvider
) -> None:
    loopback.auth_time = None
    lenient = await make_service({"idp": loopback.provider_config()})
    await link(lenient, ALICE, follow_authorization, provider="idp")
    await granted(lenient, begin)

    strict = await make_service({"idp": loopback.provider_config(require_auth_time=True)})
    loopback.auth_time = "now"
    await link(strict, ALICE, follow_authorization, provider="idp")
    loopback.auth_time = None
    failure = await refused(strict, begin)
    assert failure.details["claim"] == "auth_time"


async def test_a_code_is_exchanged_once(service: Any, linked: str, begin: Any, loopback: LoopbackProvider) -> None:
    _, query = await step_up(service, begin)
    await service.complete_callback("social", query)
    exchanges = len(loopback.token_requests)
    second = await begin(service, ALICE, "idp")
    with pytest.raises(errors.ReplayDetected):
        await service.complete_callback(
            "social", {"code": query["code"], "state": state_of(second.data["authorizationUrl"])}
        )
    assert len(loopback.token_requests) == exchanges  # refused before the provider was asked


async def test_a_code_issued_for_another_challenge_fails_pkce_at_the_provider(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider
) -> None:
    """Injected into another challenge, a code meets that challenge's PKCE verifier: the provider
    refuses the exchange, whatever the ID token would say."""
    victim = await begin(service, ALICE, "idp")
    attacker = await begin(service, ALICE, "idp")
    stolen = await follow_authorization(victim.data["authorizationUrl"])
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback(
            "social", {"code": stolen["code"], "state": state_of(attacker.data["authorizationUrl"])}
        )
    assert failure.value.details["providerError"] == "invalid_grant"
    assert loopback.token_refusals == ["invalid_grant"]


async def test_token_endpoint_refusal_names_the_providers_error(make_service: Any, loopback: LoopbackProvider) -> None:
    service = await make_service({"idp": loopback.provider_config(client_secret="not-the-secret")})
    start = await service.begin_enrollment(ALICE, EnrollmentRequest("social", {"provider": "idp"}))
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", await follow_authorization(start.data["authorizationUrl"]))
    assert failure.value.details["providerError"] == "invalid_client"
    assert await service.list_credentials(ALICE) == []


async def test_callback_from_another_issuer_is_refused(service: Any, linked: str, begin: Any) -> None:
    start, query = await step_up(service, begin)
    with pytest.raises(errors.VerificationFailed):
        await service.complete_callback("social", {**query, "iss": "https://evil.example"})
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is None


@pytest.mark.parametrize("bad", [{"code": ""}, {"code": "x" * 5000}, {"code": None}])
async def test_malformed_callback_is_an_invalid_response(
    service: Any, linked: str, begin: Any, bad: dict[str, str | None], loopback: LoopbackProvider
) -> None:
    start, query = await step_up(service, begin)
    callback = {k: v for k, v in {**query, **bad}.items() if v is not None}
    exchanges = len(loopback.token_requests)
    with pytest.raises(errors.InvalidResponse) as failure:
        await service.complete_callback("social", callback)
    assert len(loopback.token_requests) == exchanges
    assert (await service.challenge_status(ALICE, start.challenge_id)).status is ChallengeStatus.FAILED
    assert failure.value.details["field"] == "code"


async def test_discovery_must_name_the_configured_issuer(
    make_service: Any, loopback: LoopbackProvider, link: Any
) -> None:
    service = await make_service({"idp": loopback.provider_config(issuer=loopback.issuer + "/")})
    with pytest.raises(ProviderUnavailable) as failure:
        await link(service, ALICE, follow_authorization, provider="idp")
    assert failure.value.code == "provider_unavailable"
    assert "issuer" in str(failure.value)


async def test_discovery_is_cached_for_its_ttl(
    service: Any, linked: str, begin: Any, loopback: LoopbackProvider, clock: Any
) -> None:
    fetched = loopback.discovery_fetches
    await begin(service, ALICE, "idp")
    await begin(service, ALICE, "idp")
    assert loopback.discovery_fetches == fetched
    clock.advance(3601)
    await begin(service, ALICE, "idp")
    assert loopback.discovery_fetches == fetched + 1


async def test_provider_outage(
    make_service: Any, link: Any, begin: Any, loopback: LoopbackProvider, clock: Any, events: list[Any]
) -> None:
    service = await make_service({"idp": loopback.provider_config()}, discovery_ttl=60)
    await link(service, ALICE, follow_authorization, provider="idp")
    start, query = await step_up(service, begin)
    await loopback.close()
    clock.advance(61)  # the cached discovery document is stale; the challenge lives on
    with pytest.raises(ProviderUnavailable):
        await begin(service, ALICE, "idp")
    with pytest.raises(ProviderUnavailable):
        await service.complete_callback("social", query)
    state = await service.challenge_status(ALICE, start.challenge_id)
    assert state.status is ChallengeStatus.FAILED and state.failure == "provider_unavailable"
    # An outage is not the person's failure: nothing counts toward the lockout.
    assert not [e for e in events if e.type == "verification_failed"]
