"""Attacks on challenges, callbacks, budgets, enrolment and credentials over HTTP: reading or
answering another user's challenge, forged and replayed callback state, concurrent guessing
against the attempt budget and the lockout, enrolling without ``credential:link``, touching
another user's credentials, and expiry at the exact boundary. Each fails if the attack works."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest

from stepup_core.models import Credential, CredentialFormat, Factor, Principal
from stepup_core.testing.methods import APPROVED, PinVerifier, RedirectVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token
from stepup_core.verifier import Attempt, Verification, VerifierContext

PIN = "2468"
USERS = ("alice", "bob", "carol")  # carol starts with no credential
NEW_CHALLENGE = {"method": "pin", "requestedScopes": ["user:update"]}


@attrs.define
class SlowPin(PinVerifier):
    """The PIN method taking a moment to verify, as real methods do (a database, a signature):
    concurrent requests really overlap inside ``verify``."""

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        await asyncio.sleep(0.02)
        return await super().verify(ctx, attempt)


async def call(
    stack: StepUpStack,
    method: str,
    path: str,
    body: Any = None,
    *,
    user: str | None = "alice",
    token: str | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = dict(headers or {})
    if user is not None:
        sent["Authorization"] = f"Bearer {session_token(user)}"
    if token is not None:
        sent["X-Elevated-Access-Token"] = token
    async with stack.http.request(method, stack.base_url + path, json=body, headers=sent, params=params) as resp:
        raw = await resp.read()
        assert resp.status < 500, f"{method} {path} -> {resp.status}: {raw[:300]!r}"
        parsed = await resp.json(content_type=None) if raw and "json" in resp.content_type else raw.decode()
        if resp.status >= 400 and "json" in resp.content_type:
            assert resp.content_type == "application/problem+json" and parsed["code"], parsed
        return resp.status, parsed


async def begin(stack: StepUpStack, user: str = "alice", method: str = "pin", scopes: tuple[str, ...] = ("user:update",)
                ) -> dict[str, Any]:
    status, start = await call(stack, "POST", "/stepup/challenges", {"method": method, "requestedScopes": list(scopes)},
                               user=user)
    assert status == 201, start
    return dict(start)


async def verify(stack: StepUpStack, challenge_id: str, code: str = PIN, user: str = "alice", **extra: Any
                 ) -> tuple[int, Any]:
    return await call(stack, "POST", "/stepup/verify",
                      {"method": "pin", "challengeId": challenge_id, "response": {"code": code}, **extra}, user=user)


async def link_token(stack: StepUpStack, user: str = "alice") -> str:
    start = await begin(stack, user, scopes=("credential:link",))
    status, issued = await verify(stack, start["challengeId"], user=user)
    assert status == 200, issued
    return str(issued["elevatedAccessToken"])


@pytest.fixture
def methods() -> ThrowawayPlugin:
    return ThrowawayPlugin([
        SlowPin(name="pin"),
        PinVerifier(name="code", requires_challenge=False, formats=(CredentialFormat.PHONE_NUMBER,)),
        PinVerifier(name="confirmed", confirm=True, factor=Factor.MFA, formats=(CredentialFormat.TOTP,),
                    sign_in=False),
        RedirectVerifier(),
    ])


@pytest.fixture
async def stack(methods: ThrowawayPlugin) -> AsyncIterator[StepUpStack]:
    async with StepUpStack.start(plugins=[methods], users=USERS) as stack:
        for user in ("alice", "bob"):
            status, started = await call(stack, "POST", "/stepup/enrollments",
                                         {"method": "pin", "params": {"pin": PIN}}, user=user)
            assert status == 201, started
        yield stack


def failures(methods: ThrowawayPlugin, user: str = "alice") -> int:
    return sum(1 for e in methods.of_type("verification_failed") if e.user_id == user)


# --- ownership ---------------------------------------------------------------------------------


async def test_another_users_challenge_reads_exactly_like_an_unknown_one(stack: StepUpStack) -> None:
    start = await begin(stack)
    cid = start["challengeId"]
    status, as_bob = await call(stack, "GET", f"/stepup/challenges/{cid}", user="bob")
    made_up = "chl_" + "A" * 22
    _, unknown = await call(stack, "GET", f"/stepup/challenges/{made_up}", user="bob")
    assert status == 404 and as_bob["code"] == "challenge_not_found"
    assert {k: v for k, v in as_bob.items() if k != "challengeId"} == {
        k: v for k, v in unknown.items() if k != "challengeId"
    }
    # Bob answering it (even with alice's PIN) is just as unknown, and costs alice nothing.
    for _ in range(8):
        status, body = await verify(stack, cid, user="bob")
        assert status == 404 and body["code"] == "challenge_not_found"
    # Alice in another session does not see it either.
    with pytest.raises(Exception, match="unknown"):
        await stack.service.challenge_status(Principal("alice", "another-session"), cid)
    status, issued = await verify(stack, cid)
    assert status == 200 and issued["scopes"] == ["user:update"]


async def test_challenge_and_enrolment_ids_are_unguessable(stack: StepUpStack) -> None:
    ids = [(await begin(stack))["challengeId"] for _ in range(50)]
    assert len(set(ids)) == 50
    for cid in ids:
        assert re.fullmatch(r"chl_[A-Za-z0-9_-]{22,}", cid), cid  # 128 random bits or more


async def test_a_challenge_answers_only_its_own_method_and_purpose(stack: StepUpStack) -> None:
    start = await begin(stack)
    status, body = await call(stack, "POST", "/stepup/verify", {
        "method": "code", "challengeId": start["challengeId"], "response": {"code": PIN},
        "requestedScopes": ["user:update"]})
    assert status == 404 and body["code"] == "challenge_not_found"
    # A step-up challenge is no enrolment, and an enrolment no challenge.
    status, body = await call(stack, "POST", f"/stepup/enrollments/{start['challengeId']}", {"response": {"pin": PIN}})
    assert status == 404
    status, started = await call(stack, "POST", "/stepup/enrollments", {"method": "confirmed", "params": {"pin": PIN}},
                                 user="carol")
    assert status == 201
    status, body = await call(stack, "POST", "/stepup/verify", {
        "method": "confirmed", "challengeId": started["enrollmentId"], "response": {"code": PIN}}, user="carol")
    assert status == 404
    # A challenge bound to one credential cannot be answered for another.
    status, body = await verify(stack, start["challengeId"], credentialId="cred_someone-elses")
    assert status == 422 and body["code"] == "validation_error"


# --- callbacks ------------------------------------------------------------------------------------


def _state(start: dict[str, Any]) -> str:
    return parse_qs(urlsplit(start["data"]["authorizationUrl"]).query)["state"][0]


@pytest.fixture
def social(methods: ThrowawayPlugin) -> ThrowawayPlugin:
    for user in ("alice", "bob"):
        methods.app_credentials[user] = [
            Credential(id=f"{user}-provider", user_id=user, method="", format=CredentialFormat.OAUTH,
                       factor=Factor.REAUTH, created_at=1.0, sign_in=True, alias="Provider")
        ]
    return methods


async def test_forged_and_replayed_callback_state_never_completes_a_challenge(
    stack: StepUpStack, social: ThrowawayPlugin
) -> None:
    start = await begin(stack, method="redirect")
    state = _state(start)
    callback = "/stepup/callback/redirect"
    for forged in ("x", state[:-1], state + "x", state.upper(), "", " " + state, state + "\x00"):
        status, body = await call(stack, "GET", callback, user=None, params={"state": forged, "code": APPROVED})
        assert status in (404, 422), (forged, body)
    status, body = await call(stack, "GET", "/stepup/callback/pin", user=None,
                              params={"state": state, "code": APPROVED})
    assert status == 404  # another method's callback does not take this state
    status, _ = await call(stack, "GET", f"/stepup/challenges/{start['challengeId']}")
    assert status == 200

    status, body = await call(stack, "GET", callback, user=None, params={"state": state, "code": "denied"})
    assert status == 400 and body["code"] == "verification_failed"
    status, body = await call(stack, "GET", callback, user=None, params={"state": state, "code": APPROVED})
    assert status == 404 and body["code"] == "challenge_not_found"  # the state was spent by the refusal
    status, polled = await call(stack, "GET", f"/stepup/challenges/{start['challengeId']}")
    assert status == 200 and polled["status"] == "failed" and polled["grant"] is None


async def test_a_completed_callback_hands_its_grant_to_its_owner_exactly_once(
    stack: StepUpStack, social: ThrowawayPlugin
) -> None:
    start = await begin(stack, method="redirect")
    state = _state(start)
    status, _ = await call(stack, "GET", "/stepup/callback/redirect", user=None,
                           params={"state": state, "code": APPROVED}, headers={"Accept": "text/html"})
    assert status == 200
    status, body = await call(stack, "GET", "/stepup/callback/redirect", user=None,
                              params={"state": state, "code": APPROVED})
    assert status == 404 and body["code"] == "challenge_not_found"  # replayed
    status, _ = await call(stack, "GET", f"/stepup/challenges/{start['challengeId']}", user="bob")
    assert status == 404
    polls = await asyncio.gather(*[
        call(stack, "GET", f"/stepup/challenges/{start['challengeId']}") for _ in range(20)
    ])
    grants = [body["grant"] for status, body in polls if status == 200 and body.get("grant")]
    assert len(grants) == 1, polls
    assert grants[0]["scopes"] == ["user:update"]
    assert all(status in (200, 404, 409) for status, _ in polls)


async def test_a_callback_for_an_expired_challenge_grants_nothing(stack: StepUpStack, social: ThrowawayPlugin) -> None:
    start = await begin(stack, method="redirect")
    stack.clock.current = start["expiresAt"]
    status, body = await call(stack, "GET", "/stepup/callback/redirect", user=None,
                              params={"state": _state(start), "code": APPROVED})
    assert status == 410 and body["code"] == "challenge_expired"
    status, polled = await call(stack, "GET", f"/stepup/challenges/{start['challengeId']}")
    assert status != 200 or polled["grant"] is None


async def test_odd_callback_queries_are_4xx(stack: StepUpStack, social: ThrowawayPlugin) -> None:
    start = await begin(stack, method="redirect")
    state = _state(start)
    for query in ("state=%ED%A0%80", "state=%FF%FE", "state=" + "a" * 6000, "state=&state=" + state,
                  "code=approved", "state=%00"):
        async with stack.http.get(f"{stack.base_url}/stepup/callback/redirect?{query}") as resp:
            assert 400 <= resp.status < 500, (query, resp.status, await resp.text())
    status, polled = await call(stack, "GET", f"/stepup/challenges/{start['challengeId']}")
    assert status == 200 and polled["status"] == "pending"


# --- budgets and lockout under concurrency --------------------------------------------------------


async def test_concurrent_guesses_cannot_exceed_a_challenges_attempt_budget(
    stack: StepUpStack, methods: ThrowawayPlugin
) -> None:
    start = await begin(stack)
    results = await asyncio.gather(*[verify(stack, start["challengeId"], code=f"{i:04d}9") for i in range(30)])
    assert Counter(status for status, _ in results) == {400: 4, 429: 26}, results
    assert failures(methods) == 5
    status, body = await verify(stack, start["challengeId"])  # the right PIN, too late
    assert status == 429 and body["code"] == "attempts_exhausted"


async def test_concurrent_guesses_across_challenges_cannot_overrun_the_lockout(
    stack: StepUpStack, methods: ThrowawayPlugin
) -> None:
    """Ten failures lock the user out. Guesses spread over many challenges and sent at once must
    not all be checked: at most ten wrong answers are evaluated, and then even the right PIN is
    refused."""
    challenges = [(await begin(stack))["challengeId"] for _ in range(6)]
    guesses = [verify(stack, cid, code=f"{i:04d}9") for cid in challenges[:5] for i in range(5)]
    right = verify(stack, challenges[5])
    results = await asyncio.gather(*guesses[:12], right, *guesses[12:])
    assert failures(methods) <= 10, Counter(status for status, _ in results)
    granted = [body for status, body in results if status == 200]
    assert len(granted) <= 1
    status, body = await call(stack, "POST", "/stepup/challenges", NEW_CHALLENGE)
    assert status == 429 and body["code"] == "locked_out"
    assert sum(1 for e in methods.of_type("grant_issued") if e.user_id == "alice") == len(granted)


async def test_lockout_holds_for_its_window_and_not_a_moment_longer(stack: StepUpStack) -> None:
    challenges = [(await begin(stack))["challengeId"] for _ in range(2)]
    for cid in challenges:
        for _ in range(5):
            await verify(stack, cid, code="0000")
    status, body = await call(stack, "POST", "/stepup/challenges", NEW_CHALLENGE)
    assert status == 429 and body["code"] == "locked_out"
    status, body = await call(stack, "POST", "/stepup/verify", {"method": "code", "response": {"code": PIN},
                                                                "requestedScopes": ["user:update"]})
    assert status == 429  # every method, not only the one guessed at
    stack.clock.advance(900 - 0.001)
    status, _ = await call(stack, "POST", "/stepup/challenges", NEW_CHALLENGE)
    assert status == 429
    stack.clock.advance(0.001)
    start = await begin(stack)
    status, _ = await verify(stack, start["challengeId"])
    assert status == 200
    status, _ = await call(stack, "POST", "/stepup/challenges", {"method": "pin", "requestedScopes": ["user:update"]},
                           user="bob")
    assert status == 201  # bob was never affected


# --- expiry at the boundary ------------------------------------------------------------------------


async def test_a_challenge_expires_exactly_at_its_expiry(stack: StepUpStack) -> None:
    start = await begin(stack)
    stack.clock.current = start["expiresAt"] - 0.001
    status, _ = await verify(stack, start["challengeId"], code="0000")
    assert status == 400
    status, _ = await verify(stack, start["challengeId"])
    assert status == 200
    late = await begin(stack)
    stack.clock.current = late["expiresAt"]
    status, body = await verify(stack, late["challengeId"])
    assert status == 410 and body["code"] == "challenge_expired"
    stack.clock.advance(10_000)  # long gone: unknown, still no grant
    status, body = await verify(stack, late["challengeId"])
    assert status == 404


# --- enrolment and credentials ---------------------------------------------------------------------


async def test_enrolment_needs_a_credential_link_token_of_this_user_and_session(stack: StepUpStack) -> None:
    body = {"method": "code", "params": {"pin": PIN}}
    wrong_scope_start = await begin(stack, scopes=("user:update",))
    _, wrong_scope = await verify(stack, wrong_scope_start["challengeId"])
    bobs = await link_token(stack, "bob")
    other_session = await stack.service.tokens.mint(Principal("alice", "another-session"), ["credential:link"],
                                                    method="pin", ttl=600, single_use=False)
    for token in (None, wrong_scope["elevatedAccessToken"], bobs, other_session.elevated_access_token, "sut_x"):
        status, answer = await call(stack, "POST", "/stepup/enrollments", body, token=token)
        assert status == 401 and answer["code"] == "insufficient_user_authentication", answer
        assert answer["scope"] == "credential:link"
    assert len(await stack.service.list_credentials(stack.principal("alice"))) == 1
    status, _ = await call(stack, "POST", "/stepup/enrollments", body, token=await link_token(stack))
    assert status == 201


async def test_an_enrolment_begun_before_the_first_credential_cannot_add_a_second_without_a_token(
    stack: StepUpStack,
) -> None:
    """Carol has no credential, so starting an enrolment needs no token. If one is linked while
    that enrolment is pending (the stolen-session attacker's, say), completing it must need a
    ``credential:link`` token like any second credential."""
    status, pending = await call(stack, "POST", "/stepup/enrollments",
                                 {"method": "confirmed", "params": {"pin": "13579"}}, user="carol")
    assert status == 201 and pending["credential"] is None
    status, first = await call(stack, "POST", "/stepup/enrollments", {"method": "pin", "params": {"pin": PIN}},
                               user="carol")
    assert status == 201 and first["credential"] is not None
    status, body = await call(stack, "POST", f"/stepup/enrollments/{pending['enrollmentId']}",
                              {"response": {"pin": "13579"}}, user="carol")
    assert status == 401 and body["code"] == "insufficient_user_authentication" and body["scope"] == "credential:link"
    assert [c.method for c in await stack.service.list_credentials(stack.principal("carol"))] == ["pin"]
    status, linked = await call(stack, "POST", f"/stepup/enrollments/{pending['enrollmentId']}",
                                {"response": {"pin": "13579"}}, user="carol", token=await link_token(stack, "carol"))
    assert status == 200 and linked["method"] == "confirmed"


async def test_a_redirect_enrolment_begun_before_the_first_credential_is_not_linked_by_its_callback_later(
    stack: StepUpStack,
) -> None:
    status, pending = await call(stack, "POST", "/stepup/enrollments", {"method": "redirect"}, user="carol")
    assert status == 201
    status, _ = await call(stack, "POST", "/stepup/enrollments", {"method": "pin", "params": {"pin": PIN}},
                           user="carol")
    assert status == 201
    status, _ = await call(stack, "GET", "/stepup/callback/redirect", user=None,
                           params={"state": pending["data"]["state"], "code": APPROVED, "sub": "attacker"})
    assert status == 401
    assert [c.method for c in await stack.service.list_credentials(stack.principal("carol"))] == ["pin"]


async def test_a_first_enrolment_still_needs_no_token(stack: StepUpStack) -> None:
    status, pending = await call(stack, "POST", "/stepup/enrollments",
                                 {"method": "confirmed", "params": {"pin": "13579"}}, user="carol")
    assert status == 201
    status, linked = await call(stack, "POST", f"/stepup/enrollments/{pending['enrollmentId']}",
                                {"response": {"pin": "13579"}}, user="carol")
    assert status == 200 and linked["method"] == "confirmed"


async def test_nobody_deletes_or_renames_another_users_credential(stack: StepUpStack) -> None:
    alices = (await stack.service.list_credentials(stack.principal("alice")))[0]
    for scope, verb, body in (("credential:unlink", "DELETE", None),
                              ("credential:update", "PATCH", {"alias": "mine now", "isDefault": True})):
        start = await begin(stack, "bob", scopes=(scope,))
        _, issued = await verify(stack, start["challengeId"], user="bob")
        status, answer = await call(stack, verb, f"/stepup/credentials/{alices.id}", body, user="bob",
                                    token=issued["elevatedAccessToken"])
        assert status == 404 and answer["code"] == "credential_not_found"
    assert await stack.service.list_credentials(stack.principal("alice")) == [alices]
