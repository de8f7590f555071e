"""Re-authentication against a real OpenID Connect provider on loopback (oidc-provider-mock).

Each test drives the provider's sign-in form with an HTTP client for a chosen subject, hands
the provider's redirect to ``StepUpService.complete_callback`` (what the callback route does)
and looks at what the user would see: a grant picked up once, or a failed challenge and none.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from stepup_social import subject_identifier
from stepup_social.testing import sign_in_at_mock_provider

from stepup_core import errors
from stepup_core.models import ChallengeRequest, ChallengeStatus, CredentialFormat, EnrollmentRequest, Factor, Principal

ALICE = Principal("user-alice", "session-1")


def mock_providers(issuer: str, **extra: Any) -> dict[str, dict[str, Any]]:
    return {
        "mock": {
            "issuer": issuer,
            "client_id": "stepup-app",
            "client_secret": "s3cret",
            "scopes": ["openid", "email"],
            **extra,
        }
    }


@pytest.fixture
async def service(make_service: Any, mock_issuer: str) -> Any:
    return await make_service(mock_providers(mock_issuer))


@pytest.fixture
async def alice_linked(service: Any, link: Any, mock_sign_in: Any) -> str:
    return await link(service, ALICE, mock_sign_in("alice-sub"), provider="mock")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_linking_stores_issuer_and_subject_not_email(service: Any, alice_linked: str, mock_issuer: str) -> None:
    [view] = await service.list_credentials(ALICE)
    assert view.id == alice_linked
    assert (view.method, view.format, view.factor, view.type) == (
        "social",
        CredentialFormat.OAUTH,
        Factor.REAUTH,
        "mock",
    )
    assert view.alias == "mock (al***)"  # from the email claim, masked
    stored = await service.credentials.get(ALICE.user_id, alice_linked)
    assert stored.identifier == subject_identifier(mock_issuer, "alice-sub")
    assert "alice-sub" not in repr(view)  # the subject never leaves the server


async def test_authorization_url_asks_for_a_fresh_login_with_pkce(
    service: Any, alice_linked: str, begin: Any, mock_issuer: str, callback_url: str
) -> None:
    start = await begin(service, ALICE, "mock")
    assert start.data["provider"] == "mock"
    url = start.data["authorizationUrl"]
    assert url.startswith(f"{mock_issuer}/oauth2/authorize?")
    query = query_of(url)
    assert query["response_type"] == "code"
    assert query["client_id"] == "stepup-app"
    assert query["redirect_uri"] == callback_url
    assert query["scope"] == "openid email"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256
    assert query["prompt"] == "login"
    assert query["max_age"] == "0"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    # A second challenge gets its own state, nonce and PKCE pair.
    other = query_of((await begin(service, ALICE, "mock")).data["authorizationUrl"])
    assert {other[k] for k in ("state", "nonce", "code_challenge")}.isdisjoint(
        {query[k] for k in ("state", "nonce", "code_challenge")}
    )


async def test_sign_in_grants_once(service: Any, alice_linked: str, begin: Any, events: list[Any]) -> None:
    start = await begin(service, ALICE, "mock", scope="credential:unlink")
    assert start.credential_id == alice_linked
    pending = await service.challenge_status(ALICE, start.challenge_id)
    assert pending.status is ChallengeStatus.PENDING and pending.grant is None

    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    done = await service.complete_callback("social", query)
    assert done.status is ChallengeStatus.VERIFIED and done.grant is None  # the browser never sees a token

    picked = await service.challenge_status(ALICE, start.challenge_id)
    assert picked.grant is not None
    assert picked.grant.scopes == ("credential:unlink",)
    assert picked.grant.method == "social"
    grant = await service.require_scope(ALICE, "credential:unlink", picked.grant.elevated_access_token)
    assert grant is not None and grant.credential_id == alice_linked

    with pytest.raises((errors.ChallengeUsed, errors.ChallengeNotFound)):
        await service.challenge_status(ALICE, start.challenge_id)
    assert any(e.type == "grant_issued" and e.method == "social" for e in events)


async def test_another_session_cannot_pick_up_the_grant(service: Any, alice_linked: str, begin: Any) -> None:
    start = await begin(service, ALICE, "mock")
    await service.complete_callback(
        "social", await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    )
    with pytest.raises(errors.ChallengeNotFound):
        await service.challenge_status(Principal(ALICE.user_id, "another-session"), start.challenge_id)
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is not None


async def test_wrong_state_is_refused_and_the_real_one_still_works(service: Any, alice_linked: str, begin: Any) -> None:
    start = await begin(service, ALICE, "mock")
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    for bad in ("forged-state", query["state"][:-1], ""):
        with pytest.raises((errors.ChallengeNotFound, errors.ValidationError)):
            await service.complete_callback("social", {**query, "state": bad})
    assert (await service.challenge_status(ALICE, start.challenge_id)).status is ChallengeStatus.PENDING
    assert (await service.complete_callback("social", query)).status is ChallengeStatus.VERIFIED


async def test_state_is_used_once(service: Any, alice_linked: str, begin: Any) -> None:
    start = await begin(service, ALICE, "mock")
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    await service.complete_callback("social", query)
    with pytest.raises(errors.ChallengeNotFound):
        await service.complete_callback("social", query)
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is not None


async def test_replayed_code_is_refused_before_reaching_the_provider(
    service: Any, alice_linked: str, begin: Any, mock_issuer: str, callback_url: str
) -> None:
    first = await begin(service, ALICE, "mock")
    used = await sign_in_at_mock_provider(first.data["authorizationUrl"], "alice-sub")
    await service.complete_callback("social", used)
    assert (await service.challenge_status(ALICE, first.challenge_id)).grant is not None

    second = await begin(service, ALICE, "mock")
    second_state = query_of(second.data["authorizationUrl"])["state"]
    with pytest.raises(errors.ReplayDetected):
        await service.complete_callback("social", {"code": used["code"], "state": second_state})
    after = await service.challenge_status(ALICE, second.challenge_id)
    assert after.status is ChallengeStatus.FAILED and after.grant is None
    assert after.failure == "replay_detected"

    # The provider itself refuses a second exchange of the code, too.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{mock_issuer}/oauth2/token",
            data={"grant_type": "authorization_code", "code": used["code"], "redirect_uri": callback_url},
            headers={"Authorization": "Basic " + base64.b64encode(b"stepup-app:s3cret").decode()},
        ) as answer,
    ):
        assert answer.status == 400
        assert (await answer.json())["error"] == "invalid_grant"


async def test_code_from_another_challenge_is_refused_by_nonce(service: Any, alice_linked: str, begin: Any) -> None:
    victim = await begin(service, ALICE, "mock")
    attacker = await begin(service, ALICE, "mock")
    victims_code = await sign_in_at_mock_provider(victim.data["authorizationUrl"], "alice-sub")
    attacker_state = query_of(attacker.data["authorizationUrl"])["state"]
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", {"code": victims_code["code"], "state": attacker_state})
    assert failure.value.details["claim"] == "nonce"
    assert (await service.challenge_status(ALICE, attacker.challenge_id)).grant is None


async def test_another_subject_with_the_same_email_is_refused(
    service: Any, alice_linked: str, begin: Any, mock_admin: Any
) -> None:
    await mock_admin("mallory-sub", {"email": "alice@example.com", "email_verified": True})
    await mock_admin("alice-sub", {"email": "alice@example.com", "email_verified": True})
    start = await begin(service, ALICE, "mock")
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "mallory-sub")
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", query)
    assert failure.value.details["reason"] == "subject_mismatch"
    state = await service.challenge_status(ALICE, start.challenge_id)
    assert state.status is ChallengeStatus.FAILED and state.grant is None
    assert state.failure == "verification_failed"


async def test_stale_auth_time_is_refused(
    service: Any, alice_linked: str, begin: Any, mock_admin: Any, clock: Any
) -> None:
    start = await begin(service, ALICE, "mock")
    # The provider says the person last signed in an hour ago (it reused a session).
    await mock_admin("alice-sub", {"auth_time": int(clock.now()) - 3600})
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", query)
    assert failure.value.details["claim"] == "auth_time"
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is None


async def test_auth_time_within_the_skew_is_accepted(
    service: Any, alice_linked: str, begin: Any, mock_admin: Any, clock: Any
) -> None:
    start = await begin(service, ALICE, "mock")
    await mock_admin("alice-sub", {"auth_time": int(clock.now()) - 20})  # default skew: 30 s
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    await service.complete_callback("social", query)
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is not None


async def test_denial_without_state_completes_nothing(service: Any, alice_linked: str, begin: Any) -> None:
    """This provider drops ``state`` from its ``access_denied`` redirect (RFC 6749 4.1.2.1 wants
    it echoed), so the answer cannot be tied to a challenge: it is refused and grants nothing.
    The loopback tests cover a denial that carries its state."""
    start = await begin(service, ALICE, "mock")
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], None, deny=True)
    assert query["error"] == "access_denied" and "state" not in query
    with pytest.raises(errors.ValidationError):
        await service.complete_callback("social", query)
    state = await service.challenge_status(ALICE, start.challenge_id)
    assert state.status is ChallengeStatus.PENDING and state.grant is None


async def test_a_callback_after_expiry_is_refused(service: Any, alice_linked: str, begin: Any, clock: Any) -> None:
    start = await begin(service, ALICE, "mock")
    query = await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    clock.advance(601)
    with pytest.raises(errors.ChallengeExpired):
        await service.complete_callback("social", query)


async def test_begin_needs_a_linked_account_and_a_known_provider(service: Any, begin: Any) -> None:
    with pytest.raises(errors.NoEligibleCredential):
        await begin(service, ALICE, "mock")


async def test_unknown_provider_is_a_validation_error(service: Any, alice_linked: str, begin: Any) -> None:
    with pytest.raises(errors.ValidationError) as failure:
        await begin(service, ALICE, "nosuch")
    assert failure.value.errors[0]["path"] == "params.provider"
    assert "mock" in str(failure.value)


async def test_linking_another_account_needs_a_credential_link_token(
    service: Any, alice_linked: str, begin: Any, link: Any, mock_sign_in: Any
) -> None:
    with pytest.raises(errors.StepUpRequired):
        await service.begin_enrollment(ALICE, EnrollmentRequest("social", {"provider": "mock"}))
    start = await begin(service, ALICE, "mock", scope="credential:link")
    await service.complete_callback(
        "social", await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    )
    token = (await service.challenge_status(ALICE, start.challenge_id)).grant.elevated_access_token
    second = await link(service, ALICE, mock_sign_in("alice-work-sub"), provider="mock", token=token)
    assert len(await service.list_credentials(ALICE)) == 2

    # A challenge is for one linked account: the one named, else the default one.
    named = await service.begin(ALICE, ChallengeRequest("social", second, ("user:update",), {"provider": "mock"}))
    assert named.credential_id == second
    await service.complete_callback(
        "social", await sign_in_at_mock_provider(named.data["authorizationUrl"], "alice-work-sub")
    )
    state = await service.challenge_status(ALICE, named.challenge_id)
    assert state.grant is not None
    assert (
        await service.require_scope(ALICE, "user:update", state.grant.elevated_access_token)
    ).credential_id == second

    other = await service.begin(ALICE, ChallengeRequest("social", second, ("user:update",), {"provider": "mock"}))
    with pytest.raises(errors.VerificationFailed):
        await service.complete_callback(
            "social", await sign_in_at_mock_provider(other.data["authorizationUrl"], "alice-sub")
        )


async def test_linking_the_same_account_twice_is_refused(service: Any, alice_linked: str, begin: Any) -> None:
    start = await begin(service, ALICE, "mock", scope="credential:link")
    await service.complete_callback(
        "social", await sign_in_at_mock_provider(start.data["authorizationUrl"], "alice-sub")
    )
    token = (await service.challenge_status(ALICE, start.challenge_id)).grant.elevated_access_token
    enrollment = await service.begin_enrollment(ALICE, EnrollmentRequest("social", {"provider": "mock"}), token)
    query = await sign_in_at_mock_provider(enrollment.data["authorizationUrl"], "alice-sub")
    with pytest.raises(errors.EnrollmentFailed, match="already linked"):
        await service.complete_callback("social", query)
    assert len(await service.list_credentials(ALICE)) == 1
