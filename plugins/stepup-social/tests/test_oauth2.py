"""Plain OAuth 2.0 providers with a user-info endpoint (GitHub style), served on loopback."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from stepup_social import subject_identifier
from stepup_social.testing import LoopbackProvider, follow_authorization, github_style_id

from stepup_core import errors
from stepup_core.models import ChallengeRequest, ChallengeStatus, Principal

ALICE = Principal("user-alice", "session-1")


@pytest.fixture
async def service(make_service: Any, github: LoopbackProvider) -> Any:
    return await make_service({"github": github.provider_config(display_name="GitHub")})


@pytest.fixture
async def linked(service: Any, link: Any, github: LoopbackProvider) -> str:
    github.userinfo = {"email": "alice@example.com"}
    return await link(service, ALICE, follow_authorization, provider="github")


async def test_linked_account_is_the_numeric_id_in_the_providers_namespace(
    service: Any, linked: str, github: LoopbackProvider
) -> None:
    stored = await service.credentials.get(ALICE.user_id, linked)
    assert stored.identifier == subject_identifier(github.issuer, str(github_style_id("alice")))
    assert stored.type == "github"
    assert stored.alias == "GitHub (a***@example.com)"


async def test_authorization_request_has_pkce_and_state_but_no_oidc_parameters(
    service: Any, linked: str, begin: Any, github: LoopbackProvider
) -> None:
    start = await begin(service, ALICE, "github")
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.data["authorizationUrl"]).query).items()}
    assert start.data["authorizationUrl"].startswith(github.authorization_endpoint + "?")
    assert query["scope"] == "read:user"
    assert query["code_challenge_method"] == "S256" and query["state"] and query["prompt"] == "login"
    assert "nonce" not in query and "max_age" not in query


async def test_sign_in_grants_once(service: Any, linked: str, begin: Any, github: LoopbackProvider) -> None:
    start = await begin(service, ALICE, "github")
    query = await follow_authorization(start.data["authorizationUrl"])
    assert (await service.complete_callback("social", query)).status is ChallengeStatus.VERIFIED
    grant = (await service.challenge_status(ALICE, start.challenge_id)).grant
    assert grant is not None and grant.method == "social"
    with pytest.raises((errors.ChallengeUsed, errors.ChallengeNotFound)):
        await service.challenge_status(ALICE, start.challenge_id)
    assert github.token_refusals == []


async def test_another_account_with_the_same_email_is_refused(
    service: Any, linked: str, begin: Any, github: LoopbackProvider
) -> None:
    github.subject = "mallory"
    github.userinfo = {"email": "alice@example.com", "login": "alice"}
    start = await begin(service, ALICE, "github")
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", await follow_authorization(start.data["authorizationUrl"]))
    assert failure.value.details["reason"] == "subject_mismatch"
    assert (await service.challenge_status(ALICE, start.challenge_id)).grant is None


@pytest.mark.parametrize("bad_id", [None, "", True, 1.5, {"id": 1}])
async def test_user_info_without_a_usable_id_is_refused(
    service: Any, linked: str, begin: Any, github: LoopbackProvider, bad_id: Any
) -> None:
    github.userinfo = {"id": bad_id}
    start = await begin(service, ALICE, "github")
    with pytest.raises(errors.VerificationFailed) as failure:
        await service.complete_callback("social", await follow_authorization(start.data["authorizationUrl"]))
    assert failure.value.details["claim"] == "id"


async def test_two_providers_the_challenge_binds_the_named_providers_account(
    make_service: Any, link: Any, begin: Any, github: LoopbackProvider, loopback: LoopbackProvider
) -> None:
    service = await make_service({"idp": loopback.provider_config(), "github": github.provider_config()})
    first = await link(service, ALICE, follow_authorization, provider="idp")
    start = await begin(service, ALICE, "idp", scope="credential:link")
    await service.complete_callback("social", await follow_authorization(start.data["authorizationUrl"]))
    token = (await service.challenge_status(ALICE, start.challenge_id)).grant.elevated_access_token
    second = await link(service, ALICE, follow_authorization, provider="github", token=token)

    # The default re-auth credential is the first one (idp); asking for github binds github's.
    start = await service.begin(
        ALICE, ChallengeRequest("social", requested_scopes=("user:update",), params={"provider": "github"})
    )
    assert start.credential_id == second != first
    await service.complete_callback("social", await follow_authorization(start.data["authorizationUrl"]))
    grant = (await service.challenge_status(ALICE, start.challenge_id)).grant
    assert (await service.require_scope(ALICE, "user:update", grant.elevated_access_token)).credential_id == second

    # Naming a credential picks its provider when params.provider is left out.
    start = await service.begin(
        ALICE, ChallengeRequest("social", credential_id=first, requested_scopes=("user:update",))
    )
    assert start.data["provider"] == "idp"


async def test_a_long_account_name_leaves_the_alias_within_limits(
    service: Any, link: Any, github: LoopbackProvider
) -> None:
    github.userinfo = {"email": "alice@" + "d" * 70 + ".example"}
    credential_id = await link(service, ALICE, follow_authorization, provider="github")
    [view] = [c for c in await service.list_credentials(ALICE) if c.id == credential_id]
    assert view.alias == "GitHub"


async def test_extra_authorization_parameters_cannot_override_the_protocol(
    make_service: Any, github: LoopbackProvider, link: Any, begin: Any
) -> None:
    service = await make_service(
        {"github": github.provider_config(authorize_params={"allow_signup": "false", "prompt": "none", "state": "x"})}
    )
    await link(service, ALICE, follow_authorization, provider="github")
    start = await begin(service, ALICE, "github")
    query = parse_qs(urlsplit(start.data["authorizationUrl"]).query)
    assert query["allow_signup"] == ["false"]
    assert query["prompt"] == ["login"]
    assert query["state"] != ["x"] and len(query["state"]) == 1
