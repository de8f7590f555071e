"""RFC 9470 in full: a scope policy names ``acr_values`` and ``max_age``; the 401 challenge and
the problem body carry them; the session's ``acr``, ``amr`` and ``auth_time`` come from the
application's signed session token (JwtIdentify) into the Principal; a policy may accept a
fresh, strong enough sign-in as the step-up (spent once on a single-use scope), and a grant
counts only when its authentication class and age meet the policy."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import OctKey

from stepup_core.client.problems import error_from_problem
from stepup_core.clock import ManualClock
from stepup_core.config import IdentifyConfig, config_from_mapping
from stepup_core.errors import ConfigError, StepUpRequired
from stepup_core.identify import JwtIdentify
from stepup_core.models import Principal
from stepup_core.server import build_app, grant_of, requires_scope, serve_app
from stepup_core.server.problems import step_up_challenge
from stepup_core.service import StepUpService

SECRET = "rfc9470-test-hmac-secret-of-at-least-32-bytes"
ISSUER = "https://idp.example"
CONFIG = {
    "acr": {"phr": ["key"], "urn:example:mfa": ["key", "pin"]},
    "scopes": {
        # A passkey sign-in in the last 60 s is the step-up for a payout, once.
        "wallet:export": {"acr_values": ["phr"], "max_age": 60, "accept_sign_in": True},
        # A grant from an MFA-class method, at most 300 s old, for a profile change.
        "user:update": {"acr_values": ["urn:example:mfa"], "max_age": 300},
    },
}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return CONFIG


@pytest.fixture
def methods(methods: Any) -> Any:
    from stepup_core.models import CredentialFormat, Factor
    from stepup_core.testing.methods import PinVerifier

    methods.verifiers.append(PinVerifier(name="key", factor=Factor.MFA, formats=(CredentialFormat.PASSKEY,),
                                         sign_in=False, requires_challenge=False))
    return methods


def session_token(clock: ManualClock, user: str = "alice", **claims: Any) -> str:
    now = int(clock.now())
    payload = {"iss": ISSUER, "sub": user, "sid": f"{user}-s1", "iat": now, "exp": now + 3600, **claims}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()))


@pytest.fixture
async def app_url(service: StepUpService, clock: ManualClock) -> AsyncIterator[str]:
    identify = JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, key=SECRET), clock=clock)
    app = build_app(service, identify)
    for path, scope in (("/wallet/export", "wallet:export"), ("/profile", "user:update")):

        @requires_scope(scope)
        async def handler(request: web.Request) -> web.Response:
            grant = grant_of(request)
            return web.json_response({"method": grant.method if grant else None, "acr": grant.acr if grant else None})

        app.router.add_post(path, handler)
    async with serve_app(app) as base_url:
        yield base_url


async def post(
    base_url: str, path: str, session: str, token: str | None = None, body: Any = None
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {session}"}
    if token:
        headers["X-Elevated-Access-Token"] = token
    async with aiohttp.ClientSession() as http, http.post(base_url + path, headers=headers, json=body) as resp:
        return resp.status, resp.headers, await resp.json()


# --- the challenge --------------------------------------------------------------------------------


async def test_the_challenge_carries_acr_values_and_max_age(app_url: str, clock: ManualClock) -> None:
    status, headers, problem = await post(app_url, "/profile", session_token(clock))
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="Step-up authentication is required for this action", scope="user:update", '
        'acr_values="urn:example:mfa", max_age="300"'
    )
    assert (problem["acrValues"], problem["maxAge"]) == (["urn:example:mfa"], 300)
    # The Python client reads them back.
    error = error_from_problem(401, problem)
    assert isinstance(error, StepUpRequired)
    assert (error.acr_values, error.max_age) == (("urn:example:mfa",), 300.0)
    # A scope whose policy names neither sends the plain challenge, as before.
    assert step_up_challenge("user:delete") == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="Step-up authentication is required for this action", scope="user:delete"'
    )


# --- the principal from the session token ---------------------------------------------------------


async def test_jwt_identify_reads_acr_amr_and_auth_time(clock: ManualClock) -> None:
    identify = JwtIdentify(IdentifyConfig(mode="jwt", issuer=ISSUER, key=SECRET), clock=clock)
    token = session_token(clock, acr="phr", amr=["pop", "user"], auth_time=int(clock.now()) - 5)
    principal = await identify.principal_for(token)
    assert principal == Principal("alice", "alice-s1", acr="phr", amr=("pop", "user"), auth_time=clock.now() - 5)
    # Claims of the wrong type are left out: they can only make a sign-in count for less.
    odd = await identify.principal_for(session_token(clock, acr=7, amr="pop", auth_time="yesterday"))
    assert (odd.acr, odd.amr, odd.auth_time) == (None, (), None)


# --- a fresh, strong sign-in as the step-up -------------------------------------------------------


async def test_a_fresh_passkey_sign_in_is_the_step_up_once(app_url: str, clock: ManualClock) -> None:
    session = session_token(clock, acr="phr", amr=["pop", "user"], auth_time=int(clock.now()) - 10)
    status, _, body = await post(app_url, "/wallet/export", session)
    assert (status, body) == (200, {"method": "sign-in", "acr": "phr"})
    # wallet:export is single-use: the sign-in is spent by that first use.
    status, _, problem = await post(app_url, "/wallet/export", session)
    assert (status, problem["code"]) == (401, "insufficient_user_authentication")


async def test_concurrent_uses_of_one_sign_in_let_exactly_one_through(app_url: str, clock: ManualClock) -> None:
    session = session_token(clock, acr="phr", auth_time=int(clock.now()))
    answers = await asyncio.gather(*(post(app_url, "/wallet/export", session) for _ in range(20)))
    assert sorted(status for status, _, _ in answers) == [200] + [401] * 19


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"acr": "phr", "auth_time": -61}, "too old"),
        ({"acr": "urn:example:mfa", "auth_time": -5}, "not the class the policy names"),
        ({"acr": "phr"}, "no auth_time"),
        ({"acr": "phr", "auth_time": 30}, "in the future"),
    ],
)
async def test_a_sign_in_that_is_not_fresh_or_strong_enough_is_no_step_up(
    app_url: str, clock: ManualClock, claims: dict[str, Any], why: str
) -> None:
    if "auth_time" in claims:
        claims = {**claims, "auth_time": int(clock.now()) + claims["auth_time"]}
    status, _, problem = await post(app_url, "/wallet/export", session_token(clock, **claims))
    assert (status, problem["code"]) == (401, "insufficient_user_authentication"), why


async def test_the_check_reports_a_usable_sign_in(service: StepUpService, clock: ManualClock) -> None:
    fresh = Principal("alice", "s1", acr="phr", auth_time=clock.now())
    assert (await service.check(fresh, "wallet:export")).is_required is False
    assert (await service.require_scope(fresh, "wallet:export", None)) is not None
    assert (await service.check(fresh, "wallet:export")).is_required is True  # spent
    clock.advance(61)
    later = Principal("alice", "s1", acr="phr", auth_time=clock.now() - 61)
    assert (await service.check(later, "wallet:export")).is_required is True
    # A scope without accept_sign_in never takes a sign-in for a step-up.
    assert (await service.check(fresh, "user:update")).is_required is True


# --- grants meet the policy's class and age -------------------------------------------------------


async def step_up(service: StepUpService, principal: Principal, method: str, scopes: list[str]) -> str:
    from stepup_core.models import EnrollmentCompletion, EnrollmentRequest, VerifyRequest

    credentials = await service.list_credentials(principal)
    if not any(c.method == method for c in credentials):
        start = await service.begin_enrollment(principal, EnrollmentRequest(method=method, params={"pin": "2468"}))
        if method == "pin":
            await service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion({"pin": "2468"}))
    if method == "pin":
        from stepup_core.models import ChallengeRequest

        begun = await service.begin(principal, ChallengeRequest(method="pin", requested_scopes=tuple(scopes)))
        request = VerifyRequest(method="pin", response={"code": "2468"}, challenge_id=begun.challenge_id)
    else:
        request = VerifyRequest(method=method, response={"code": "2468"}, requested_scopes=tuple(scopes))
    return (await service.verify(principal, request)).elevated_access_token


async def test_a_grant_carries_the_class_its_method_achieves(
    app_url: str, service: StepUpService, clock: ManualClock
) -> None:
    alice = Principal("alice", "alice-s1")
    token = await step_up(service, alice, "key", ["user:update"])
    grant = await service.tokens.peek(token, alice, "user:update")
    assert grant is not None and (grant.acr, grant.amr) == ("urn:example:mfa", ("pop", "user"))
    status, _, body = await post(app_url, "/profile", session_token(clock), token)
    assert (status, body) == (200, {"method": "key", "acr": "urn:example:mfa"})
    # max_age = 300 is shorter than the 600 s TTL: past it the grant no longer counts.
    clock.advance(301)
    status, _, problem = await post(app_url, "/profile", session_token(clock), token)
    assert (status, problem["maxAge"]) == (401, 300)


async def test_a_method_that_does_not_achieve_the_class_cannot_grant_the_scope(service: StepUpService) -> None:
    from stepup_core.errors import MethodNotAllowed

    carol = Principal("carol", "carol-s1")
    await step_up(service, carol, "pin", ["user:update"])  # pin achieves urn:example:mfa: fine
    with pytest.raises(MethodNotAllowed, match="wallet:export"):
        await step_up(service, carol, "pin", ["wallet:export"])  # but not phr


def test_policies_that_could_never_be_met_are_refused() -> None:
    with pytest.raises(ConfigError, match="accept_sign_in needs max_age"):
        config_from_mapping({"scopes": {"user:update": {"accept_sign_in": True, "acr_values": ["phr"]}}})
    with pytest.raises(ConfigError, match="nothing could ever satisfy"):
        config_from_mapping({"scopes": {"user:update": {"acr_values": ["phr"]}}})
    with pytest.raises(ConfigError, match="authentication context class"):
        config_from_mapping({"acr": {"p r": ["key"]}, "scopes": {"user:update": {"acr_values": ['a"b']}}})


def test_the_policy_table_names_the_class_each_method_achieves() -> None:
    policies = config_from_mapping({**CONFIG, "secret_key": secrets.token_hex(32)}).scope_policies()
    assert policies.acr_of("key", ["wallet:export"]) == "phr"
    assert policies.acr_of("pin", ["user:update"]) == "urn:example:mfa"
    assert policies.acr_of("nope") is None
    assert json.dumps(policies.policy_for("wallet:export").acr_values) == '["phr"]'
