"""Property-based HTTP fuzzing of the real server against its own ``GET /stepup/openapi.json``.

A :class:`~stepup_core.testing.stack.StepUpStack` (memory store, the throwaway PIN methods of
``stepup_core.testing.methods``) runs on loopback in a thread of its own; schemathesis turns the
document the server serves into requests, positive and negative, and hypothesis varies who sends
them: nobody, a garbage session, alice with no token, with a garbage ``X-Elevated-Access-Token``,
with her own valid token for another scope, with bob's token. Path ids are sometimes swapped for
real ids of alice's and bob's credentials and challenges.

Whatever is sent:

- never a 5xx;
- every error is ``application/problem+json`` with a string ``code`` and the response's status;
- every answer is one the OpenAPI document describes (stepup's own ``ResponseValidator``);
- an anonymous or unknown caller gets 401 ``unauthenticated`` from every authenticated route;
- another user's credential or challenge reads as 404;
- no answer carries an ``elevatedAccessToken`` unless the request proved alice's PIN;
- nobody's credentials change (no variant holds a ``credential:*`` token);
- a request the document calls valid is never refused as invalid: schemathesis'
  ``positive_data_acceptance`` ("schema-valid request rejected") runs on every positive case
  that reaches the server as generated. A method's verdict on a proof (a wrong code is
  ``400 verification_failed``; the method's own ``response`` and ``params`` members, typed as
  objects in the core's document, ``400 invalid_response`` or ``enrollment_failed``; an expired
  challenge ``410``) is an answer, not a rejection of the request's shape.

Runs are derandomized (the same examples every time) and bounded so the module stays well under
a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import string
import threading
from collections import Counter
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import positive_data_acceptance

from stepup_core.models import (
    ChallengeRequest,
    CredentialFormat,
    EnrollmentRequest,
    Principal,
    VerifyRequest,
)
from stepup_core.server import document_for
from stepup_core.server.routes import ROUTES
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token

T = TypeVar("T")

PREFIX = "/stepup"
ALICE_PIN = "482913"
BOB_PIN = "771155"
#: ``pin`` needs a challenge (like an emailed code); ``code`` needs none (like TOTP).
PIN = PinVerifier(name="pin")
CODE = PinVerifier(name="code", requires_challenge=False, formats=(CredentialFormat.PHONE_NUMBER,))
KNOWN_SCOPES = ("user:update", "user:delete", "wallet:export", "wallet:sign", "credential:link",
                "credential:unlink", "credential:update")
TOKEN_HEADER = "X-Elevated-Access-Token"

FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
)


@attrs.define
class LiveServer:
    """The stack served from its own event loop in a thread; tests talk to it over HTTP."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stack: StepUpStack
    base_url: str
    alice: Principal
    bob: Principal
    ids: dict[str, str] = attrs.field(factory=dict)
    credentials_before: dict[str, list[tuple[str, str | None, bool]]] = attrs.field(factory=dict)

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    async def credential_summary(self, principal: Principal) -> list[tuple[str, str | None, bool]]:
        views = await self.stack.service.list_credentials(principal)
        return sorted((v.id, v.alias, v.is_default) for v in views)

    def credentials_now(self) -> dict[str, list[tuple[str, str | None, bool]]]:
        async def both() -> dict[str, list[tuple[str, str | None, bool]]]:
            return {p.user_id: await self.credential_summary(p) for p in (self.alice, self.bob)}

        return self.run(both())

    def token(self, principal: Principal, scope: str) -> str:
        """A fresh token for ``principal`` and ``scope``, proven with the ``code`` method."""

        async def mint() -> str:
            pin = ALICE_PIN if principal.user_id == "alice" else BOB_PIN
            issued = await self.stack.service.verify(
                principal, VerifyRequest(method="code", response={"code": pin}, requested_scopes=(scope,))
            )
            return issued.elevated_access_token

        return self.run(mint())

    def challenge(self, principal: Principal, scopes: tuple[str, ...] = ("user:update",)) -> str:
        async def begin() -> str:
            start = await self.stack.service.begin(principal, ChallengeRequest(method="pin", requested_scopes=scopes))
            return start.challenge_id

        return self.run(begin())


async def _enrol(stack: StepUpStack, principal: Principal, pin: str) -> dict[str, str]:
    """Enrol ``pin`` then ``code`` (the second needs a ``credential:link`` token, proven with the first)."""
    service = stack.service
    first = await service.begin_enrollment(principal, EnrollmentRequest(method="pin", params={"pin": pin}))
    assert first.credential is not None
    start = await service.begin(principal, ChallengeRequest(method="pin", requested_scopes=("credential:link",)))
    link = await service.verify(
        principal, VerifyRequest(method="pin", challenge_id=start.challenge_id, response={"code": pin})
    )
    second = await service.begin_enrollment(
        principal, EnrollmentRequest(method="code", params={"pin": pin}), link.elevated_access_token
    )
    assert second.credential is not None
    return {"pin": first.credential.id, "code": second.credential.id}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stepup-fuzz-server", daemon=True)
    thread.start()
    # Budgets, lockout and the caps on live challenges and begins are tested elsewhere
    # (test_security_limits.py); here they would only turn every later answer into 429.
    config = {"limits": {"max_attempts": 1_000_000, "lockout_failures": 1_000_000, "max_live_challenges": 1_000_000,
                         "max_live_enrollments": 1_000_000, "begin_limit": 1_000_000}}
    context = StepUpStack.start(plugins=[ThrowawayPlugin([PIN, CODE])], config=config)

    def call(coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)  # type: ignore[arg-type]

    stack = call(context.__aenter__())
    try:
        alice, bob = stack.principal("alice"), stack.principal("bob")
        server = LiveServer(loop, thread, stack, stack.base_url, alice, bob)
        for user, principal, pin in (("alice", alice, ALICE_PIN), ("bob", bob, BOB_PIN)):
            for method, credential_id in call(_enrol(stack, principal, pin)).items():
                server.ids[f"{user}-{method}-credential"] = credential_id
            server.ids[f"{user}-challenge"] = server.challenge(principal)
        server.credentials_before = server.credentials_now()
        yield server
    finally:
        call(context.__aexit__(None, None, None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> Any:
    """The schema as the running server serves it (and it is the document the code builds for
    this service: its methods and scopes)."""
    served = requests.get(f"{live.base_url}{PREFIX}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(document_for(live.stack.service, PREFIX)))
    return schemathesis.openapi.from_url(f"{live.base_url}{PREFIX}/openapi.json")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- what may be sent -----------------------------------------------------------------------

_LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
_URLSAFE = string.ascii_letters + string.digits + "-_"

#: Header values requests can send (latin-1, no control characters): bytes above 0x7f are not UTF-8.
garbage_tokens = st.one_of(
    st.text(_LATIN1, min_size=1, max_size=64).map(str.strip).filter(bool),
    st.text(_URLSAFE, max_size=64).map(lambda s: "sut_" + s),
    st.text(_LATIN1, min_size=1, max_size=32).map(lambda s: ("sut_" + s).strip()),
    st.integers(min_value=129, max_value=7000).map(lambda n: "sut_" + "A" * n),
    st.just("sut_" + secrets.token_urlsafe(32)),  # well-formed, never issued
)

VARIANTS = (
    "anonymous",
    "garbage-session",
    "alice",
    "alice+garbage-token",
    "alice+token-for-another-scope",
    "alice+bobs-token",
)

#: A method's verdict on a proof: answers to well-formed requests, not rejections of their shape.
VERDICTS = {"verification_failed", "invalid_response", "replay_detected", "verifier_error", "enrollment_failed",
            "challenge_expired"}

#: Ids a path parameter may be swapped for: real ones of alice and of bob.
ID_CHOICES = ("generated", "alice-pin-credential", "alice-code-credential", "bob-pin-credential",
              "bob-code-credential", "alice-challenge", "bob-challenge")


def _operations() -> list[Any]:
    """(method, path, mode) for every route; negative data only where there is input to spoil."""
    cases = []
    for spec in ROUTES:
        cases.append(pytest.param(spec.method, PREFIX + spec.path, GenerationMode.POSITIVE,
                                  id=f"{spec.method} {spec.path} positive"))
        if spec.request is not None or "{" in spec.path or spec.query:
            cases.append(pytest.param(spec.method, PREFIX + spec.path, GenerationMode.NEGATIVE,
                                      id=f"{spec.method} {spec.path} negative"))
    return cases


def _authenticated(method: str, path: str) -> bool:
    return next(s.authenticated for s in ROUTES if (s.method, PREFIX + s.path) == (method, path))


def send(http: requests.Session, base_url: str, case: Any) -> requests.Response:
    """Send a generated case as it is (the transport is ours: the same on every schemathesis 4.x)."""
    headers = dict(case.headers or {})
    data = None
    if case.body is not NOT_SET:
        data = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        headers.setdefault("Content-Type", case.media_type or "application/json")
    return http.request(case.method, base_url + case.formatted_path, params=case.query or None,
                        headers=headers, data=data, timeout=30, allow_redirects=False)


#: What an issued token looks like; a match is a grant only if the store holds it.
TOKEN_PATTERN = re.compile(r"sut_[A-Za-z0-9_-]{43}")


def issued_tokens(live: LiveServer, raw: bytes) -> list[str]:
    """Every live elevated token in an answer, under whatever name it appears."""
    found = set(TOKEN_PATTERN.findall(raw.decode("utf-8", "replace")))

    async def live_ones() -> list[str]:
        store = live.stack.service.store
        return [t for t in found if await store.get("grant:" + hashlib.sha256(t.encode()).hexdigest()) is not None]

    return live.run(live_ones()) if found else []


def assert_problem_shape(response: requests.Response, where: str) -> Any:
    """No 5xx; an error is problem+json with its code; returns the parsed body (or None)."""
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    body = None
    if content_type in ("application/json", "application/problem+json") and response.content:
        body = response.json()
    if response.status_code >= 400:
        assert content_type == "application/problem+json", f"{where}: {response.status_code} as {content_type!r}"
        assert isinstance(body, dict) and isinstance(body.get("code"), str) and body["code"], f"{where}: {body!r}"
        assert body.get("status") == response.status_code, f"{where}: {body!r}"
    return body


def _proves_alice_pin(method: str, path: str, body: Any, variant: str) -> bool:
    return (
        variant.startswith("alice")
        and (method, path) == ("POST", f"{PREFIX}/verify")
        and isinstance(body, dict)
        and body.get("method") in ("pin", "code")
        and isinstance(body.get("response"), dict)
        and body["response"].get("code") == ALICE_PIN
    )


# --- the fuzz -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_fuzzed_requests_never_break_the_contract(
    live: LiveServer, api_schema: Any, http: requests.Session, method: str, path: str, mode: GenerationMode,
    variant: str,
) -> None:
    operation = api_schema[path][method]
    authenticated = _authenticated(method, path)
    tokens = {
        "alice+token-for-another-scope": live.token(live.alice, "user:update"),
        "alice+bobs-token": live.token(live.bob, "credential:unlink"),
    }
    bobs = {live.ids["bob-pin-credential"], live.ids["bob-code-credential"], live.ids["bob-challenge"]}
    statuses: Counter[int] = Counter()

    @settings(FUZZ_SETTINGS, max_examples=30 if mode is GenerationMode.POSITIVE else 20)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode), label="case")
        replaced = ("authorization", TOKEN_HEADER.lower())
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in replaced}
        if variant == "garbage-session":
            headers["Authorization"] = "Bearer " + data.draw(garbage_tokens, label="session")
        elif variant != "anonymous":
            headers["Authorization"] = "Bearer " + session_token("alice")
        if variant == "alice+garbage-token":
            headers[TOKEN_HEADER] = data.draw(garbage_tokens, label="token")
        elif variant in tokens:
            headers[TOKEN_HEADER] = tokens[variant]
        case.headers = headers
        swapped = None
        if case.path_parameters and "id" in case.path_parameters:
            choice = data.draw(st.sampled_from(ID_CHOICES), label="id")
            if choice != "generated":
                case.path_parameters["id"] = swapped = live.ids[choice]
        if isinstance(case.body, dict) and isinstance(case.body.get("method"), str):
            # Reach past "unknown method": sometimes name an installed one.
            case.body["method"] = data.draw(st.sampled_from([case.body["method"], "pin", "code"]), label="method")
        as_generated = True  # the case is still one the document calls valid (in positive mode)
        if isinstance(case.body, dict) and isinstance(case.body.get("params"), dict):
            # ...and sometimes a PIN the throwaway methods would enrol (or text that is no Unicode).
            pin = data.draw(st.sampled_from([None, "24682468", "\ud800\ud800\ud800\ud800"]) | st.text(min_size=4),
                            label="params.pin")
            if pin is not None:
                case.body["params"]["pin"] = pin
                as_generated = "\ud800" not in pin
        if case.path_parameters and "method" in case.path_parameters:
            case.path_parameters["method"] = data.draw(
                st.sampled_from([case.path_parameters["method"], "pin", "code"]), label="callback method"
            )

        response = send(http, live.base_url, case)
        where = f"{variant}: {method} {case.formatted_path} body={case.body!r:.300} -> {response.status_code}"
        body = assert_problem_shape(response, where)
        sent_path = urlsplit(response.request.url or "").path
        live.stack.validator.check(
            method, sent_path, response.status_code,
            response.headers.get("Content-Type", "").split(";")[0].strip(), response.content,
        )
        statuses[response.status_code] += 1
        verdict = response.status_code in (400, 410) and isinstance(body, dict) and body.get("code") in VERDICTS
        if mode is GenerationMode.POSITIVE and as_generated and not verdict:
            case.validate_response(response, checks=[positive_data_acceptance])

        if path.endswith("/check") and response.status_code == 200:
            # The store and every hook are up: "check_failed" would mean an error inside the check.
            assert "check_failed" not in body["reasons"], where
        if authenticated and variant in ("anonymous", "garbage-session"):
            assert response.status_code == 401 and body["code"] == "unauthenticated", where
        if variant.startswith("alice") and swapped in bobs:
            # Bob's ids read as unknown to alice (a malformed body may be refused first).
            assert response.status_code in (400, 404, 413, 415, 422), where
            if response.status_code == 404:
                assert body["code"] in ("credential_not_found", "challenge_not_found"), where
        for token in issued_tokens(live, response.content):
            sent = case.body if isinstance(case.body, dict) else None
            assert _proves_alice_pin(method, path, sent, variant), f"{where}: a token without proof: {token[:12]}"
        assert live.credentials_now() == live.credentials_before, f"{where}: credentials changed"

    fuzz()
    assert statuses, "no example reached the server"


MUTATIONS = (
    "none", "bob's session", "wrong code", "bob's credential", "alice's other credential", "lookalike scope",
    "method spelt differently", "no scopes", "bob's challenge", "used challenge", "wider scopes", "no challenge",
    "made-up challenge",
)
CHALLENGE_ONLY = {"bob's challenge", "used challenge", "wider scopes", "no challenge", "made-up challenge"}
LOOKALIKES = ("WALLET:export", "wallet:export\n", "wallet:export ", "nope:nope", "", "wallet:\u0435xport",
              "user:update\u200b", "user:*")


def test_fuzzed_verification_grants_exactly_when_alice_proves_her_pin(live: LiveServer, http: requests.Session) -> None:
    """``POST /verify`` built from real pieces: an honest request (alice, her PIN, her live
    challenge, valid scopes), or the same with one thing wrong. The honest one gets a token bound
    to her session and to exactly the scopes asked (or the challenge's); every other one is refused."""
    outcomes: Counter[str] = Counter()
    used = live.challenge(live.alice)
    live.run(live.stack.service.verify(live.alice, VerifyRequest(method="pin", challenge_id=used,
                                                                 response={"code": ALICE_PIN})))

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(["pin", "code"]), label="method")
        mutation = data.draw(st.sampled_from([m for m in MUTATIONS if method == "pin" or m not in CHALLENGE_ONLY]),
                             label="mutation")
        user = "bob" if mutation == "bob's session" else "alice"
        body: dict[str, Any] = {"method": method, "response": {"code": ALICE_PIN}}
        if method == "pin":
            challenge_scopes = tuple(data.draw(st.lists(st.sampled_from(KNOWN_SCOPES), min_size=1, max_size=2,
                                                        unique=True), label="challenge scopes"))
            body["challengeId"] = fresh = live.challenge(live.alice, challenge_scopes)
            asked = data.draw(st.lists(st.sampled_from(challenge_scopes), unique=True), label="scopes")
        else:
            fresh, challenge_scopes = None, ()
            asked = data.draw(st.lists(st.sampled_from(KNOWN_SCOPES), min_size=1, max_size=3, unique=True),
                              label="scopes")
        if asked:
            body["requestedScopes"] = list(asked)
        if data.draw(st.booleans(), label="name the credential"):
            body["credentialId"] = live.ids[f"alice-{method}-credential"]

        if mutation == "wrong code":
            body["response"]["code"] = data.draw(
                st.sampled_from([BOB_PIN, "0000", ALICE_PIN + " ", ALICE_PIN[:-1], " " + ALICE_PIN])
                | st.text(max_size=8).filter(lambda c: c != ALICE_PIN), label="code")
        elif mutation == "bob's credential":
            body["credentialId"] = live.ids[f"bob-{method}-credential"]
        elif mutation == "alice's other credential":
            body["credentialId"] = live.ids[f"alice-{'code' if method == 'pin' else 'pin'}-credential"]
        elif mutation == "lookalike scope":
            body["requestedScopes"] = [*asked, data.draw(st.sampled_from(LOOKALIKES), label="lookalike")]
        elif mutation == "method spelt differently":
            body["method"] = data.draw(st.sampled_from([method.upper(), method + " ", " " + method, method + "\u200b"]),
                                       label="spelling")
        elif mutation == "no scopes":
            body.pop("requestedScopes", None)
            if method == "code" or data.draw(st.booleans(), label="empty list"):
                body["requestedScopes"] = []
            if method == "pin":
                body["challengeId"] = live.challenge(live.alice, ())
        elif mutation == "bob's challenge":
            body["challengeId"] = live.ids["bob-challenge"]
        elif mutation == "used challenge":
            body["challengeId"] = used
        elif mutation == "wider scopes":
            extra = data.draw(st.sampled_from([s for s in KNOWN_SCOPES if s not in challenge_scopes]), label="extra")
            body["requestedScopes"] = [*asked, extra]
        elif mutation == "no challenge":
            body.pop("challengeId")
        elif mutation == "made-up challenge":
            body["challengeId"] = "chl_" + data.draw(st.text(_URLSAFE, min_size=1, max_size=24), label="made-up id")

        response = http.post(f"{live.base_url}{PREFIX}/verify", json=body, timeout=30,
                             headers={"Authorization": "Bearer " + session_token(user)})
        where = f"{mutation} / {user}: {body!r} -> {response.status_code} {response.text[:300]}"
        answer = assert_problem_shape(response, where)
        live.stack.validator.check("POST", f"{PREFIX}/verify", response.status_code,
                                   response.headers["Content-Type"].split(";")[0], response.content)
        outcomes[mutation if response.status_code == 200 else f"refused: {answer['code']}"] += 1
        if mutation != "none":
            assert response.status_code != 200 and not issued_tokens(live, response.content), where
            return
        assert response.status_code == 200, where
        expected = set(asked) or set(challenge_scopes)
        assert set(answer["scopes"]) == expected, where
        token = answer["elevatedAccessToken"]
        assert issued_tokens(live, response.content) == [token]

        async def bound() -> tuple[bool, bool]:
            tokens = live.stack.service.tokens
            grant = await tokens.peek(token, live.alice, answer["scopes"][0])
            foreign = [await tokens.peek(token, who, scope) for scope in KNOWN_SCOPES
                       for who in (live.bob, Principal("alice", "another-session"))]
            return grant is not None and grant.scopes == tuple(sorted(expected)), any(foreign)

        mine, elsewhere = live.run(bound())
        assert mine and not elsewhere, where
        assert fresh is None or live.run(live.stack.service.store.get("challenge:" + fresh)) is None, where
        assert live.credentials_now() == live.credentials_before, where

    fuzz()
    # Both directions of the oracle were exercised.
    assert outcomes["none"] >= 5, outcomes
    assert sum(v for k, v in outcomes.items() if k.startswith("refused")) >= 60, outcomes
