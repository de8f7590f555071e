"""Limits an attacker meets over HTTP: guesses sent at once through every path that evaluates
one (verification, enrolment completion, redirect callbacks) stay within the user's lockout;
one user cannot fill the store with challenges or enrolments, nor begin them without bound,
whatever the method. Each test fails if the attack works."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest

from stepup_core.models import Credential, CredentialFormat, Factor
from stepup_core.testing.methods import PinVerifier, RedirectVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack
from stepup_core.verifier import Attempt, NewCredential, Verification, VerifierContext

PIN = "2468"
LOCKOUT = 10


@attrs.define
class SlowConfirmedPin(PinVerifier):
    """A PIN whose enrolment is confirmed, taking a moment to check an answer (as real methods
    do), so that concurrent requests really overlap while a guess is evaluated."""

    name: str = "confirmed"
    factor: Factor = Factor.MFA
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.TOTP,)
    sign_in: bool = False
    confirm: bool = True
    evaluated: int = 0

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        self.evaluated += 1
        await asyncio.sleep(0.02)
        return await super().complete_enrollment(ctx, attempt)


@attrs.define
class SlowRedirect(RedirectVerifier):
    evaluated: int = 0

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        self.evaluated += 1
        await asyncio.sleep(0.02)
        return await super().verify(ctx, attempt)


@pytest.fixture
def methods() -> ThrowawayPlugin:
    plugin = ThrowawayPlugin([PinVerifier(name="pin"), SlowConfirmedPin(), SlowRedirect(provider_url=None)])
    plugin.app_credentials["alice"] = [
        Credential(id="alice-provider", user_id="alice", method="", format=CredentialFormat.OAUTH,
                   factor=Factor.REAUTH, created_at=1.0, sign_in=True, alias="Provider")
    ]
    return plugin


@pytest.fixture
def limits() -> dict[str, Any]:
    return {}


@pytest.fixture
async def stack(methods: ThrowawayPlugin, limits: dict[str, Any]) -> AsyncIterator[StepUpStack]:
    """alice and bob hold a PIN (``pin``); carol and dave hold nothing yet."""
    config = {"limits": {"lockout_failures": LOCKOUT, **limits}}
    async with StepUpStack.start(plugins=[methods], config=config, users=("alice", "bob", "carol", "dave")) as stack:
        pin = methods.verifier("pin")
        for user in ("alice", "bob"):
            await stack.service.credentials.save(Credential(
                id=f"{user}-pin", user_id=user, method="pin", format=CredentialFormat.EMAIL, factor=Factor.REAUTH,
                created_at=1.0, data=pin.credential_data(stack.service.keys, PIN),
            ))
        yield stack


async def api(stack: StepUpStack, method: str, path: str, body: Any = None, user: str = "alice"
              ) -> tuple[int, Any, dict[str, str]]:
    url = f"{stack.base_url}/stepup{path}"
    async with stack.http.request(method, url, json=body, headers=stack.headers(user)) as response:
        assert response.status < 500, await response.text()
        parsed = await response.json(content_type=None) if "json" in response.content_type else None
        return response.status, parsed, dict(response.headers)


def assert_rate_limited(status: int, body: Any, headers: dict[str, str]) -> None:
    assert status == 429, body
    assert body["code"] == "rate_limited"
    assert isinstance(body["retryAfter"], (int, float)) and body["retryAfter"] > 0
    assert int(headers["Retry-After"]) >= 1


# --- one path for every guess ----------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"max_live_enrollments": 10}])
async def test_concurrent_wrong_enrolment_confirmations_are_held_to_the_lockout(
    stack: StepUpStack, methods: ThrowawayPlugin
) -> None:
    """60 wrong confirmations at once over 10 pending enrolments: 10 evaluated, the rest locked out."""
    pending = []
    for _ in range(10):
        status, body, _ = await api(stack, "POST", "/enrollments", {"method": "confirmed", "params": {"pin": PIN}},
                                    user="carol")
        assert status == 201, body
        pending.append(body["enrollmentId"])
    answers = await asyncio.gather(*(
        api(stack, "POST", f"/enrollments/{pending[i % 10]}", {"response": {"pin": "0000"}}, user="carol")
        for i in range(60)
    ))
    verifier = methods.verifier("confirmed")
    assert verifier.evaluated == LOCKOUT
    assert Counter(status for status, _, _ in answers) == {400: LOCKOUT, 429: 60 - LOCKOUT}
    assert {body["code"] for status, body, _ in answers if status == 429} == {"locked_out"}
    assert len(methods.of_type("verification_failed")) == LOCKOUT
    # Locked out: even the right PIN is not evaluated now.
    status, body, _ = await api(stack, "POST", f"/enrollments/{pending[0]}", {"response": {"pin": PIN}}, user="carol")
    assert status == 429 and body["code"] == "locked_out"
    assert verifier.evaluated == LOCKOUT


@pytest.mark.parametrize("limits", [{"max_live_challenges": 40}])
async def test_concurrent_refused_callbacks_are_held_to_the_lockout(
    stack: StepUpStack, methods: ThrowawayPlugin
) -> None:
    states = []
    for _ in range(30):
        status, body, _ = await api(stack, "POST", "/challenges", {"method": "redirect",
                                                                  "requestedScopes": ["user:update"]})
        assert status == 201, body
        states.append(parse_qs(urlsplit(body["data"]["authorizationUrl"]).query)["state"][0])
    answers = await asyncio.gather(*(
        api(stack, "GET", f"/callback/redirect?state={state}&code=denied", user="nobody") for state in states
    ))
    assert methods.verifier("redirect").evaluated == LOCKOUT
    assert Counter(status for status, _, _ in answers) == {400: LOCKOUT, 429: 30 - LOCKOUT}
    assert {body["code"] for status, body, _ in answers if status == 429} == {"locked_out"}


async def test_a_success_leaves_no_lockout_window_behind(stack: StepUpStack, methods: ThrowawayPlugin) -> None:
    """A right answer gives its reserved place back and closes the empty window, so failures
    later are counted in a window that starts with them, not at the success."""
    status, body, _ = await api(stack, "POST", "/enrollments", {"method": "confirmed", "params": {"pin": PIN}},
                                user="carol")
    status, _, _ = await api(stack, "POST", f"/enrollments/{body['enrollmentId']}", {"response": {"pin": PIN}},
                             user="carol")
    assert status == 200
    assert await stack.service.store.get("failures:carol") is None


# --- caps on live records and begin limits -----------------------------------------------------


async def test_one_user_cannot_open_challenges_without_bound_by_default(
    stack: StepUpStack, methods: ThrowawayPlugin
) -> None:
    """The attack: thousands of challenges in seconds, each kept for its lifetime. By default at
    most 50 are open at once and 60 begun per minute and method; other users are unaffected."""
    answers = [await api(stack, "POST", "/challenges", {"method": "pin", "requestedScopes": ["user:update"]})
               for _ in range(80)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:50] == [201] * 50
    assert set(statuses[50:]) == {429}
    for status, body, headers in answers[50:]:
        assert_rate_limited(status, body, headers)
    status, body, _ = await api(stack, "POST", "/challenges", {"method": "pin", "requestedScopes": ["user:update"]},
                                user="bob")
    assert status == 201, body
    limited = methods.of_type("rate_limited")
    assert {e.details["limit"] for e in limited} == {"live-stepUp", "begin-user"}
    assert all(e.outcome == "warning" for e in limited)


@pytest.mark.parametrize("limits", [{"max_live_challenges": 3, "begin_limit": 100}])
async def test_live_challenges_are_capped_per_user_until_one_is_used_or_expires(stack: StepUpStack) -> None:
    body = {"method": "pin", "requestedScopes": ["user:update"]}
    started = [(await api(stack, "POST", "/challenges", body))[1] for _ in range(3)]
    status, refused, headers = await api(stack, "POST", "/challenges", body)
    assert_rate_limited(status, refused, headers)
    assert refused["retryAfter"] == pytest.approx(300 + 120)  # the oldest one's record lives that long
    # A wrong answer does not free a place.
    status, _, _ = await api(stack, "POST", "/verify", {"method": "pin", "challengeId": started[1]["challengeId"],
                                                        "response": {"code": "0000"}})
    assert status == 400
    assert_rate_limited(*await api(stack, "POST", "/challenges", body))
    # Using one frees its place at once.
    status, _, _ = await api(stack, "POST", "/verify", {"method": "pin", "challengeId": started[0]["challengeId"],
                                                        "response": {"code": PIN}})
    assert status == 200
    status, _, _ = await api(stack, "POST", "/challenges", body)
    assert status == 201
    status, refused, headers = await api(stack, "POST", "/challenges", body)
    assert_rate_limited(status, refused, headers)
    # Expiry (with the records' grace period) does.
    stack.clock.advance(300 + 120)
    status, _, _ = await api(stack, "POST", "/challenges", body)
    assert status == 201


@pytest.mark.parametrize("limits", [{"max_live_enrollments": 2, "begin_limit": 100}])
async def test_pending_enrolments_are_capped_per_user(stack: StepUpStack) -> None:
    body = {"method": "confirmed", "params": {"pin": PIN}}
    first = (await api(stack, "POST", "/enrollments", body, user="carol"))[1]
    assert (await api(stack, "POST", "/enrollments", body, user="carol"))[0] == 201
    assert_rate_limited(*await api(stack, "POST", "/enrollments", body, user="carol"))
    assert (await api(stack, "POST", "/enrollments", body, user="dave"))[0] == 201  # per user
    status, _, _ = await api(stack, "POST", f"/enrollments/{first['enrollmentId']}", {"response": {"pin": PIN}},
                             user="carol")
    assert status == 200
    # carol now holds a credential, so a further enrolment needs a credential:link token: the
    # cap is not what refuses it.
    status, refused, _ = await api(stack, "POST", "/enrollments", body, user="carol")
    assert status == 401 and refused["code"] == "insufficient_user_authentication"


@pytest.mark.parametrize("limits", [{"begin_limit": 5, "begin_window": 60}])
async def test_begin_is_rate_limited_for_every_method(stack: StepUpStack) -> None:
    """The PIN method declares no begin limit of its own (it sends nothing): the core's applies."""
    body = {"method": "pin", "requestedScopes": ["user:update"]}
    for _ in range(5):
        start = (await api(stack, "POST", "/challenges", body))[1]
        status, _, _ = await api(stack, "POST", "/verify", {"method": "pin", "challengeId": start["challengeId"],
                                                            "response": {"code": PIN}})
        assert status == 200  # used at once: the cap on open challenges is not what refuses
    status, refused, headers = await api(stack, "POST", "/challenges", body)
    assert_rate_limited(status, refused, headers)
    assert refused["retryAfter"] == 60
    # Per method and per user; enrolments count as begins too.
    assert (await api(stack, "POST", "/challenges", {"method": "redirect", "requestedScopes": ["user:update"]}))[0] \
        == 201
    assert (await api(stack, "POST", "/challenges", body, user="bob"))[0] == 201
    for _ in range(5):
        assert (await api(stack, "POST", "/enrollments", {"method": "confirmed", "params": {"pin": PIN}},
                          user="carol"))[0] == 201
    assert_rate_limited(*await api(stack, "POST", "/enrollments", {"method": "confirmed", "params": {"pin": PIN}},
                                   user="carol"))
    stack.clock.advance(60)
    assert (await api(stack, "POST", "/challenges", body))[0] == 201


def test_limits_must_be_positive() -> None:
    from stepup_core.config import config_from_mapping
    from stepup_core.errors import ConfigError

    for key, value in (("max_live_challenges", 0), ("max_live_enrollments", -1), ("begin_limit", 0),
                       ("begin_window", 0)):
        with pytest.raises(ConfigError, match=f"limits.{key}"):
            config_from_mapping({"limits": {key: value}})
