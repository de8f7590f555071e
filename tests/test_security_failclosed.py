"""Failing closed over HTTP: a store that goes away at any point of a verification or of a
protected request, and ``stepup_check`` / ``stepup_user_credentials`` implementations that raise
or answer nonsense. None of it may let a protected handler run, hand out a token without proof,
or get two tokens out of one challenge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web

from stepup_core import errors
from stepup_core.clock import Clock
from stepup_core.hookspecs import hookimpl
from stepup_core.models import Principal, StepUpVote
from stepup_core.scopes import ScopePolicy
from stepup_core.server import requires_scope
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token
from stepup_core.verifier import Attempt, Verification, VerifierContext

PIN = "2468"


class FlakyStore:
    """A memory store whose server goes away: once ``fail_after`` operations have run, every
    operation raises StoreUnavailable until ``fail_after`` is None again."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.fail_after: int | None = None
        self.ops: list[str] = []

    def arm(self, fail_after: int) -> None:
        self.ops, self.fail_after = [], fail_after

    def disarm(self) -> None:
        self.fail_after = None

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.inner, name)
        if name == "close" or not callable(operation):
            return operation

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.fail_after is not None:
                if len(self.ops) >= self.fail_after:
                    raise errors.StoreUnavailable("the store server does not answer")
                self.ops.append(name)
            return await operation(*args, **kwargs)

        return call


@attrs.define(eq=False)
class Hooks:
    """The store backend ``flaky:`` and a ``stepup_check`` / ``stepup_user_credentials`` that a
    test can make misbehave."""

    store: FlakyStore | None = None
    check: Callable[[], Any] | None = None
    user_credentials: Callable[[], Any] | None = None

    @hookimpl
    def stepup_register_stores(self, register: Callable[[str, Any], None]) -> None:
        async def open_flaky(url: str, clock: Clock) -> FlakyStore:
            self.store = FlakyStore(MemoryStore(clock=clock))
            return self.store

        register("flaky", open_flaky)

    @hookimpl
    def stepup_check(self, principal: Principal, scope: str, policy: ScopePolicy) -> Any:
        return self.check() if self.check is not None else None

    @hookimpl
    def stepup_user_credentials(self, principal: Principal) -> Any:
        return self.user_credentials() if self.user_credentials is not None else None


@attrs.define
class ClaimingPin(PinVerifier):
    """A buggy method: after checking the PIN it reports whatever credential the response names."""

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        await super().verify(ctx, attempt)
        return Verification(credential_id=str(attempt.params.get("claim")))


class Handlers:
    def __init__(self) -> None:
        self.calls = 0

    def install(self, app: web.Application) -> None:
        for path, scope in (("/app/profile", "user:update"), ("/app/export-key", "wallet:export")):

            @requires_scope(scope)
            async def handler(request: web.Request) -> web.Response:
                self.calls += 1
                return web.json_response({"ok": True})

            app.router.add_post(path, handler)


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def stack(hooks: Hooks, handlers: Handlers) -> AsyncIterator[StepUpStack]:
    methods = ThrowawayPlugin([PinVerifier(name="pin"), ClaimingPin(name="claiming", requires_challenge=False)])
    async with StepUpStack.start(plugins=[methods, hooks], config={"store": "flaky:"},
                                 setup_app=handlers.install) as stack:
        status, _ = await call(stack, "POST", "/stepup/enrollments", {"method": "pin", "params": {"pin": PIN}})
        assert status == 201
        yield stack


async def call(
    stack: StepUpStack, method: str, path: str, body: Any = None, *, token: str | None = None,
    server_errors: tuple[int, ...] = (), user: str = "alice",
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {session_token(user)}"}
    if token is not None:
        headers["X-Elevated-Access-Token"] = token
    async with stack.http.request(method, stack.base_url + path, json=body, headers=headers) as resp:
        raw = await resp.read()
        parsed = await resp.json(content_type=None) if raw and "json" in resp.content_type else None
        assert resp.status < 500 or resp.status in server_errors, f"{path} -> {resp.status}: {raw[:300]!r}"
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json" and parsed["code"], parsed
        if resp.status != 200:
            assert b"elevatedAccessToken" not in raw
        return resp.status, parsed


async def begin(stack: StepUpStack, scope: str = "user:update") -> str:
    status, start = await call(stack, "POST", "/stepup/challenges", {"method": "pin", "requestedScopes": [scope]})
    assert status == 201, start
    return str(start["challengeId"])


def verify_body(challenge_id: str, code: str = PIN) -> dict[str, Any]:
    return {"method": "pin", "challengeId": challenge_id, "response": {"code": code}}


async def token(stack: StepUpStack, scope: str = "user:update") -> str:
    status, issued = await call(stack, "POST", "/stepup/verify", verify_body(await begin(stack, scope)))
    assert status == 200
    return str(issued["elevatedAccessToken"])


async def operations_of(stack: StepUpStack, hooks: Hooks, request: Callable[[], Any]) -> int:
    """How many store operations one request makes (counted with an outage that never comes)."""
    assert hooks.store is not None
    hooks.store.arm(10_000)
    await request()
    count = len(hooks.store.ops)
    hooks.store.disarm()
    assert count > 0
    return count


# --- the store goes away ------------------------------------------------------------------------


async def test_a_store_outage_at_any_point_of_a_wrong_answer_grants_nothing(stack: StepUpStack, hooks: Hooks) -> None:
    assert hooks.store is not None
    total = await operations_of(stack, hooks, lambda: call(stack, "POST", "/stepup/verify",
                                                          verify_body("chl_unused", code="0000")))
    for fail_after in range(total + 3):
        challenge_id = await begin(stack)
        hooks.store.arm(fail_after)
        status, body = await call(stack, "POST", "/stepup/verify", verify_body(challenge_id, code="0000"),
                                  server_errors=(503,))
        hooks.store.disarm()
        assert status in (400, 404, 503), (fail_after, body)
        if status == 503:
            assert body["code"] == "store_unavailable"


async def test_a_store_outage_at_any_point_of_a_right_answer_never_yields_two_tokens(
    stack: StepUpStack, hooks: Hooks, handlers: Handlers
) -> None:
    """Whatever step the outage hits (lockout, budget, challenge, minting, bookkeeping), one
    challenge gives at most one token, and a token that came back works."""
    assert hooks.store is not None
    probe = await begin(stack)
    total = await operations_of(stack, hooks, lambda: call(stack, "POST", "/stepup/verify", verify_body(probe)))
    outcomes = set()
    for fail_after in range(total + 1):
        challenge_id = await begin(stack)
        hooks.store.arm(fail_after)
        first = await call(stack, "POST", "/stepup/verify", verify_body(challenge_id), server_errors=(503,))
        hooks.store.disarm()
        outcomes.add(first[0])
        replays = [await call(stack, "POST", "/stepup/verify", verify_body(challenge_id)) for _ in range(3)]
        tokens = [body["elevatedAccessToken"] for status, body in (first, *replays) if status == 200]
        assert len(tokens) <= 1, (fail_after, first, replays)
        for issued in tokens:
            before = handlers.calls
            status, _ = await call(stack, "POST", "/app/profile", token=issued)
            assert status == 200 and handlers.calls == before + 1
    assert outcomes == {200, 503}, outcomes  # the outage hit before and after the point of no return


@pytest.mark.parametrize(("path", "scope"), [("/app/profile", "user:update"), ("/app/export-key", "wallet:export")])
async def test_a_store_outage_during_a_protected_request_never_runs_the_handler(
    stack: StepUpStack, hooks: Hooks, handlers: Handlers, path: str, scope: str
) -> None:
    """The outage starts after 0, 1, 2... store operations of the request: until the request
    gets through every store operation it needs, the answer is 503 and the handler never runs;
    a single-use token is spent only by the request that ran the handler."""
    assert hooks.store is not None
    held = await token(stack, scope)
    for fail_after in range(20):
        hooks.store.arm(fail_after)
        status, body = await call(stack, "POST", path, token=held, server_errors=(503,))
        hooks.store.disarm()
        if status == 200:
            break
        assert status == 503 and body["code"] == "store_unavailable", (fail_after, body)
        assert handlers.calls == 0
    else:
        pytest.fail("the request never got through")
    assert fail_after >= 1 and handlers.calls == 1
    status, check = await call(stack, "POST", "/stepup/check", {"scope": scope}, token=held)
    assert check["isRequired"] is (scope == "wallet:export")  # a single-use token is spent now


async def test_the_check_answers_required_while_the_store_is_away(stack: StepUpStack, hooks: Hooks) -> None:
    assert hooks.store is not None
    held = await token(stack)
    hooks.store.arm(0)
    status, check = await call(stack, "POST", "/stepup/check", {"scope": "user:update"}, token=held)
    hooks.store.disarm()
    assert status == 200 and check["isRequired"] is True and check["reasons"] == ["check_failed"]


# --- hooks that misbehave ---------------------------------------------------------------------------


def _raise() -> Any:
    raise RuntimeError("the policy service is down")


@pytest.mark.parametrize("answer", [
    _raise, lambda: "no", lambda: {"required": False}, lambda: True, lambda: 0.5,
], ids=["raises", "a string", "a dict", "True", "a number"])
async def test_a_broken_stepup_check_denies_even_a_valid_token(
    stack: StepUpStack, hooks: Hooks, handlers: Handlers, answer: Callable[[], Any]
) -> None:
    held = await token(stack)
    hooks.check = answer
    status, body = await call(stack, "POST", "/app/profile", token=held)
    assert status == 401 and body["code"] == "insufficient_user_authentication"
    assert body["check"]["isRequired"] is True
    status, check = await call(stack, "POST", "/stepup/check", {"scope": "user:update"}, token=held)
    assert status == 200 and check["isRequired"] is True
    assert handlers.calls == 0
    hooks.check = None
    status, _ = await call(stack, "POST", "/app/profile", token=held)
    assert status == 200  # the token itself was never harmed


async def test_a_permissive_vote_cannot_waive_a_guarded_scope(
    stack: StepUpStack, hooks: Hooks, handlers: Handlers
) -> None:
    hooks.check = lambda: StepUpVote(required=False, reason="trusted network")
    status, _ = await call(stack, "POST", "/app/profile")
    assert status == 401 and handlers.calls == 0


async def test_a_vote_demanding_fresh_verification_refuses_an_existing_token(
    stack: StepUpStack, hooks: Hooks, handlers: Handlers
) -> None:
    held = await token(stack)
    hooks.check = lambda: StepUpVote(required=True, reason="risky", accept_existing_token=False)
    status, body = await call(stack, "POST", "/app/profile", token=held)
    assert status == 401 and "risky" in body["check"]["reasons"] and handlers.calls == 0


async def test_a_raising_credentials_hook_never_grants(stack: StepUpStack, hooks: Hooks) -> None:
    challenge_id = await begin(stack)
    hooks.user_credentials = _raise
    status, _ = await call(stack, "POST", "/stepup/verify", verify_body(challenge_id), server_errors=(500,))
    assert status == 500
    status, check = await call(stack, "POST", "/stepup/check", {"scope": "user:update"})
    assert status == 200 and check["isRequired"] is True
    hooks.user_credentials = None
    status, _ = await call(stack, "POST", "/stepup/verify", verify_body(challenge_id))
    assert status == 200  # the failed attempt did not consume the challenge behind the user's back


async def test_a_method_that_reports_another_users_credential_never_grants(stack: StepUpStack) -> None:
    status, bobs = await call(stack, "POST", "/stepup/enrollments", {"method": "pin", "params": {"pin": "1357"}},
                              user="bob")
    assert status == 201
    status, _ = await call(stack, "POST", "/stepup/enrollments", {"method": "claiming", "params": {"pin": PIN}},
                           token=await token(stack, "credential:link"))
    assert status == 201
    alices = {c.method: c.id for c in await stack.service.list_credentials(stack.principal("alice"))}
    for claim in (bobs["credential"]["id"], "cred_made-up", alices["pin"]):
        status, body = await call(stack, "POST", "/stepup/verify", {
            "method": "claiming", "response": {"code": PIN, "claim": claim}, "requestedScopes": ["user:update"]})
        assert status == 400 and body["code"] == "verification_failed", (claim, body)
    status, issued = await call(stack, "POST", "/stepup/verify", {
        "method": "claiming", "response": {"code": PIN, "claim": alices["claiming"]},
        "requestedScopes": ["user:update"]})
    assert status == 200 and issued["method"] == "claiming"
