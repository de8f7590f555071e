"""StepUpClient against the real server over loopback: the hook's surface end to end.

The server runs stepup's aiohttp routes on a free loopback port with throwaway methods (a PIN
code method under the names ``otp``, ``totp`` and ``recovery``; an HMAC key method with a client
half under ``passkey`` and ``wallet``; a redirect method under ``social``). Every answer the
client receives is checked against stepup's OpenAPI document.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from stepup_core import errors
from stepup_core.client import AppResponse, ScriptedPrompter, StepUpClient
from stepup_core.client.method import Answer, ClientContext
from stepup_core.models import CredentialFormat, Factor, Route
from stepup_core.plugins import get_plugin_manager
from stepup_core.testing.methods import (
    KeyClientMethod,
    KeyVerifier,
    LocalKey,
    PinVerifier,
    RedirectVerifier,
    ThrowawayPlugin,
)
from stepup_core.testing.stack import StepUpStack

USERS = (
    "alice",  # MFA: totp + passkey + recovery
    "bob",  # re-auth: otp + wallet
    "carol",  # nothing enrolled
    "dave",  # re-auth: wallet only
)
ALICE_TOTP_PIN = "135790"
ALICE_RECOVERY = "9999-8888"
BOB_PIN = "246813"


class RedirectClientMethod:
    name = "social"
    package = "stepup-social"

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        opener = ctx.options.get("open_url")
        if opener is not None:
            await opener(challenge["data"]["authorizationUrl"])
        return Answer(completed_elsewhere=True)

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        return {}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        return {}

    def unattended(self) -> None:
        return None


VERIFIERS = [
    PinVerifier(name="otp", factor=Factor.REAUTH, formats=(CredentialFormat.EMAIL,), package="stepup-otp"),
    PinVerifier(
        name="totp",
        factor=Factor.MFA,
        formats=(CredentialFormat.TOTP,),
        requires_challenge=False,
        package="stepup-totp",
        sign_in=False,
    ),
    PinVerifier(
        name="recovery",
        factor=Factor.MFA,
        formats=(CredentialFormat.RECOVERY_CODE,),
        requires_challenge=False,
        fallback=True,
        package="stepup-recovery",
        sign_in=False,
    ),
    KeyVerifier(name="passkey", factor=Factor.MFA, formats=(CredentialFormat.PASSKEY,), package="stepup-passkey"),
    KeyVerifier(name="wallet", factor=Factor.REAUTH, formats=(CredentialFormat.BLOCKCHAIN,), package="stepup-wallet"),
    # The "provider" is the callback URL itself: the browser adds ``code=approved`` (or not).
    RedirectVerifier(name="social", package="stepup-social", provider_url=None, link_at_once=True),
]
CLIENT_METHODS = [KeyClientMethod("passkey", "stepup-passkey"), KeyClientMethod("wallet", "stepup-wallet")]


@attrs.define
class Stack(StepUpStack):
    """The stack with the users' keys, their enrolled credentials and the application's state."""

    keys: dict[str, LocalKey] = attrs.field(factory=dict)
    credentials: dict[str, dict[str, str]] = attrs.field(factory=dict)
    hits: dict[str, int] = attrs.field(factory=dict)
    watched: dict[str, StepUpClient] = attrs.field(factory=dict)
    clients: list[StepUpClient] = attrs.field(factory=list)

    def client(self, user: str = "alice", **kwargs: Any) -> StepUpClient:
        kwargs.setdefault("poll_interval", 0.02)
        client = super().client(user, **kwargs)
        self.clients.append(client)
        return client


async def _enrol(stack: Stack, user: str, method: str, params: dict[str, Any], link: StepUpClient | None) -> str:
    client = link or stack.client(user)
    start = await client.begin_enrollment(method, params)
    assert start.credential is not None
    stack.clock.advance(1)  # distinct creation times: the newest MFA device is the default
    return start.credential.id


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    hits = {"always-refuses": 0}
    watched: dict[str, StepUpClient] = {}

    async def always_refuses(request: web.Request) -> web.Response:
        hits["always-refuses"] += 1
        return web.json_response(
            {
                "type": "about:blank",
                "title": "Step-up required",
                "status": 401,
                "detail": "nope",
                "code": "insufficient_user_authentication",
            },
            status=401,
            content_type="application/problem+json",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_user_authentication", scope="user:update"'},
        )

    async def loading(request: web.Request) -> web.Response:
        return web.json_response({"isLoading": watched["client"].state.is_loading})

    def routes(app: web.Application) -> None:
        app.router.add_get("/loading", loading)
        app.router.add_post("/always-refuses", always_refuses)

    plugin = ThrowawayPlugin(VERIFIERS, [*CLIENT_METHODS, RedirectClientMethod()])
    config = {"scopes": {"report:view": {"required": False}}}
    protected = {"/wallet/export": "wallet:export", "/profile": "user:update"}
    async with Stack.start(
        plugins=[plugin], config=config, users=USERS, protected=protected, setup_app=routes
    ) as stack:
        stack.hits, stack.watched = hits, watched
        stack.keys = {"alice": LocalKey(), "bob": LocalKey(), "dave": LocalKey()}
        keys = stack.keys
        # alice: totp first (no token needed), then passkey and recovery with a credential:link token.
        alice = stack.client("alice")
        creds: dict[str, dict[str, str]] = {"alice": {}, "bob": {}, "dave": {}}
        creds["alice"]["totp"] = await _enrol(stack, "alice", "totp", {"pin": ALICE_TOTP_PIN}, alice)
        await alice.verify_totp_mfa(ALICE_TOTP_PIN, requested_scopes=["credential:link"])
        creds["alice"]["passkey"] = await _enrol(
            stack, "alice", "passkey", {"key": keys["alice"].secret.hex(), "alias": "Test key"}, alice
        )
        creds["alice"]["recovery"] = await _enrol(stack, "alice", "recovery", {"pin": ALICE_RECOVERY}, alice)
        # bob: a sign-in email code, then a wallet.
        bob = stack.client("bob")
        creds["bob"]["otp"] = await _enrol(stack, "bob", "otp", {"pin": BOB_PIN, "alias": "b***@example.test"}, bob)
        await bob.send_otp(requested_scopes=["credential:link"])
        assert await bob.verify_otp(BOB_PIN) is not None
        creds["bob"]["wallet"] = await _enrol(stack, "bob", "wallet", {"key": keys["bob"].secret.hex()}, bob)
        creds["dave"]["wallet"] = await _enrol(stack, "dave", "wallet", {"key": keys["dave"].secret.hex()}, None)
        stack.credentials = creds
        try:
            yield stack
        finally:
            for client in stack.clients:
                await client.close()


# --- the check -------------------------------------------------------------------------------


async def test_check_says_required_then_not_once_a_token_is_held(stack: Stack) -> None:
    async with stack.client("bob", prompter=ScriptedPrompter(codes=[BOB_PIN])) as bob:
        before = await bob.check_step_up_auth("user:update")
        assert before.is_required and before.route is Route.REAUTH
        assert {c.method for c in before.credentials} == {"otp", "wallet"}
        assert bob.is_step_up_required("user:update")
        token = await bob.prompt_step_up_auth("user:update", method="otp")
        assert token is not None and not token.single_use
        after = await bob.check_step_up_auth("user:update")
        assert not after.is_required
        assert not bob.is_step_up_required("user:update")
        assert bob.is_step_up_required("user:delete")


async def test_a_failed_check_counts_as_required_and_is_recorded(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        result = await bob.check_step_up_auth("no:such:scope")
        assert result.is_required
        assert isinstance(bob.state.error, errors.InvalidScope)
    async with StepUpClient("http://127.0.0.1:9", "x", pm=stack.pm) as offline:
        result = await offline.check_step_up_auth("user:update")
        assert result.is_required and result.reasons == ("check_failed",)
        assert isinstance(offline.state.error, errors.ServerError)
        assert "could not reach" in str(offline.state.error)
        assert not offline.state.is_loading


# --- prompts and routing ---------------------------------------------------------------------


async def test_mfa_user_is_routed_to_mfa_and_offered_only_mfa_methods(stack: Stack) -> None:
    prompter = ScriptedPrompter(choices=["passkey"])
    async with stack.client("alice", prompter=prompter, actors={"passkey": stack.keys["alice"]}) as alice:
        token = await alice.prompt_step_up_auth("user:update")
        assert token is not None and token.method == "passkey"
        _title, options = prompter.asked[0]
        assert [o.split("[")[1].split("]")[0] for o in options] == ["passkey", "totp", "recovery"]
        assert stack.keys["alice"].answered == 1


async def test_a_single_eligible_method_skips_the_choice(stack: Stack) -> None:
    prompter = ScriptedPrompter(codes=[BOB_PIN])
    async with stack.client("bob", prompter=prompter) as bob:
        token = await bob.prompt_step_up_auth("user:update", method="otp")
        assert token is not None and token.method == "otp"
        assert [label for label, options in prompter.asked if options] == []
        assert prompter.asked == [("Code sent to b***@example.test", ())]


async def test_reauthentication_is_refused_for_a_user_with_mfa(stack: Stack) -> None:
    async with stack.client("alice") as alice:
        with pytest.raises(errors.MethodNotAllowed, match="prompt_mfa"):
            await alice.prompt_reauthenticate("user:update")
        assert isinstance(alice.state.error, errors.MethodNotAllowed)
    # The server refuses it too: a re-auth method cannot mint for a user with MFA.
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("user:update")
        assert (await bob.prompt_reauthenticate("user:update", method="otp", code=BOB_PIN)) is not None


async def test_prompt_mfa_needs_a_registered_mfa_device(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        with pytest.raises(errors.NoEligibleCredential) as caught:
            await bob.prompt_mfa("user:update")
        message = str(caught.value)
        assert "no MFA device" in message and "enrol one of: passkey, totp" in message
        assert bob.state.error is caught.value


async def test_no_eligible_method_says_what_to_enrol(stack: Stack) -> None:
    async with stack.client("carol") as carol:
        with pytest.raises(errors.NoEligibleCredential) as caught:
            await carol.prompt_step_up_auth("user:update")
        assert "enrol one of: otp, social, wallet" in str(caught.value)


async def test_a_credential_whose_client_half_is_missing_names_the_package(stack: Stack) -> None:
    bare_pm = get_plugin_manager(load_entrypoints=False)  # no client halves at all
    async with stack.client("dave", pm=bare_pm) as dave:
        needs_wallet = r"install stepup-wallet here \(from a stepup checkout: pip install \./plugins/stepup-wallet\)"
        with pytest.raises(errors.NoEligibleCredential, match=needs_wallet):
            await dave.prompt_step_up_auth("user:update")
        await dave.check_step_up_auth("user:update")
        with pytest.raises(errors.ClientMethodMissing, match=r"pip install \./plugins/stepup-wallet") as caught:
            await dave.verify_wallet(stack.keys["dave"])
        assert caught.value.details["package"] == "stepup-wallet"
        assert dave.state.error is caught.value
        with pytest.raises(errors.ClientMethodMissing, match=r"pip install \./plugins/stepup-passkey"):
            await dave.verify_passkey_mfa(requested_scopes=["user:update"])


async def test_scripted_prompter_fails_loudly_when_the_script_runs_out(stack: Stack) -> None:
    async with stack.client("alice", prompter=ScriptedPrompter()) as alice:
        with pytest.raises(AssertionError, match="no choice left"):
            await alice.prompt_step_up_auth("user:update")


# --- verifiers and state --------------------------------------------------------------------


async def test_verify_otp_before_send_otp_is_an_error(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        with pytest.raises(errors.ChallengeNotFound, match="send_otp"):
            await bob.verify_otp(BOB_PIN, requested_scopes=["user:update"])
        assert isinstance(bob.state.error, errors.ChallengeNotFound)


async def test_send_otp_defaults_to_the_sign_in_credential_and_reports_the_channel(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("wallet:export")
        sent = await bob.send_otp()
        assert sent.verification_type == "email"
        assert sent.credential_id == stack.credentials["bob"]["otp"]
        assert sent.destination == "b***@example.test"
        token = await bob.verify_otp(BOB_PIN)
        assert token is not None and token.scopes == ("wallet:export",) and token.single_use
        # The pending code is used up: a second verify is an error, not a second token.
        with pytest.raises(errors.ChallengeNotFound):
            await bob.verify_otp(BOB_PIN)


async def test_a_hook_level_credential_id_is_used_by_send_otp(stack: Stack) -> None:
    second = await _enrol(stack, "bob", "otp", {"pin": "111222", "alias": "second"}, await _linked_bob(stack))
    async with stack.client("bob", credential_id=second) as bob:
        await bob.check_step_up_auth("user:update")
        sent = await bob.send_otp()
        assert sent.credential_id == second
        assert await bob.verify_otp(BOB_PIN) is None  # the other credential's PIN
        assert await bob.verify_otp("111222") is not None


async def _linked_bob(stack: Stack) -> StepUpClient:
    bob = stack.client("bob")
    await bob.send_otp(requested_scopes=["credential:link"])
    assert await bob.verify_otp(BOB_PIN) is not None
    return bob


async def test_reauth_verifiers_record_failures_and_return_none(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("user:update")
        await bob.send_otp()
        assert await bob.verify_otp("000000") is None
        assert isinstance(bob.state.error, errors.VerificationFailed)
        assert not bob.state.is_loading
        bob.reset_state()
        assert bob.state.error is None
        assert await bob.verify_wallet(LocalKey()) is None  # a key the server does not know
        assert isinstance(bob.state.error, errors.VerificationFailed)
        token = await bob.verify_wallet(stack.keys["bob"])
        assert token is not None and token.method == "wallet"


async def test_mfa_verifiers_record_failures_and_raise(stack: Stack) -> None:
    async with stack.client("alice") as alice:
        await alice.check_step_up_auth("user:update")
        with pytest.raises(errors.VerificationFailed):
            await alice.verify_totp_mfa("000000")
        assert isinstance(alice.state.error, errors.VerificationFailed)
        alice.reset_state()
        with pytest.raises(errors.VerificationFailed):
            await alice.verify_recovery_code("0000-0000")
        assert isinstance(alice.state.error, errors.VerificationFailed)
        alice.reset_state()
        with pytest.raises(errors.VerificationFailed):
            await alice.verify_passkey_mfa(LocalKey())
        assert isinstance(alice.state.error, errors.VerificationFailed)
        assert (await alice.verify_passkey_mfa(stack.keys["alice"])).method == "passkey"
        assert (await alice.verify_totp_mfa(ALICE_TOTP_PIN)).method == "totp"
        assert (await alice.verify_recovery_code(ALICE_RECOVERY)).method == "recovery"


async def test_verify_social_polls_until_the_callback_completes_it(stack: Stack) -> None:
    social_id = await _enrol(stack, "dave", "social", {}, await _linked_dave(stack))
    opened: list[str] = []

    async def browser(url: str) -> None:
        opened.append(url)
        async with aiohttp.ClientSession() as other, other.get(url + "&code=approved") as resp:
            assert resp.status == 200

    async with stack.client("dave") as dave:
        token = await dave.verify_social("test", open_url=browser, requested_scopes=["user:update"])
        assert token is not None and token.method == "social", dave.state.error
        assert opened and "/stepup/callback/social" in opened[0]
        assert dave.jar.peek("user:update") == token
        assert social_id


async def _linked_dave(stack: Stack) -> StepUpClient:
    dave = stack.client("dave")
    assert await dave.verify_wallet(stack.keys["dave"], requested_scopes=["credential:link"]) is not None
    return dave


async def test_verify_social_records_a_refusal_and_a_timeout(stack: Stack) -> None:
    await _enrol(stack, "dave", "social", {}, await _linked_dave(stack))

    async def refusing_browser(url: str) -> None:
        async with aiohttp.ClientSession() as other, other.get(url + "&code=denied") as resp:
            assert resp.status == 400

    async def absent_browser(url: str) -> None:
        return None

    async with stack.client("dave") as dave:
        assert await dave.verify_social("test", open_url=refusing_browser, requested_scopes=["user:update"]) is None
        assert isinstance(dave.state.error, errors.VerificationFailed)
        assert "failed" in str(dave.state.error)
        dave.reset_state()
        assert (
            await dave.verify_social("test", open_url=absent_browser, timeout=0.2, requested_scopes=["user:update"])
            is None
        )
        assert isinstance(dave.state.error, errors.ChallengePending)
        assert "not completed within 0.2 s" in str(dave.state.error)


# --- the token jar on the wire ----------------------------------------------------------------


async def test_single_use_token_leaves_the_jar_when_attached_and_cannot_be_reused(stack: Stack) -> None:
    async with stack.client("alice", actors={"passkey": stack.keys["alice"]}) as alice:
        token = await alice.prompt_mfa("wallet:export", method="passkey")
        assert token.single_use
        first = await alice.post("/wallet/export", scope="wallet:export")
        assert first.status == 200
        assert first.json() == {"path": "/wallet/export", "scope": "wallet:export", "user": "alice"}
        assert first.token_sent == token.elevated_access_token
        assert alice.jar.peek("wallet:export") is None
        assert alice.is_step_up_required("wallet:export")
        # Without a token the client sends none; the raw token sent again is refused.
        second = await alice.post("/wallet/export", scope="wallet:export")
        assert second.status == 401 and second.token_sent is None
        replay = await alice.post("/wallet/export", headers={"X-Elevated-Access-Token": token.elevated_access_token})
        assert replay.status == 401
        assert replay.step_up_challenge() == {
            "error": "insufficient_user_authentication",
            "error_description": "Step-up authentication is required for this action",
            "scope": "wallet:export",
        }
        problem = replay.problem()
        assert isinstance(problem, errors.StepUpRequired)
        assert problem.check["route"] == "mfa"


async def test_time_bound_token_is_reused_until_it_expires(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("user:update")
        await bob.send_otp()
        token = await bob.verify_otp(BOB_PIN)
        assert token is not None and not token.single_use
        for _ in range(2):
            response = await bob.post("/profile", scope="user:update")
            assert response.status == 200 and response.token_sent == token.elevated_access_token
        stack.clock.advance(token.expires_at - stack.clock.now() + 1)
        assert bob.jar.peek("user:update") is None
        late = await bob.post("/profile", scope="user:update")
        assert late.status == 401 and late.token_sent is None


async def test_a_token_is_bound_to_the_session_it_was_issued_to(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("user:update")
        await bob.send_otp()
        token = await bob.verify_otp(BOB_PIN)
        assert token is not None
    async with stack.client("dave") as dave:
        stolen = await dave.post("/profile", headers={"X-Elevated-Access-Token": token.elevated_access_token})
        assert stolen.status == 401


async def test_server_problems_come_back_as_their_error_classes(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        with pytest.raises(errors.UnknownMethod):
            await bob.step_up("nope", requested_scopes=["user:update"])
        with pytest.raises(errors.InvalidScope):
            await bob.verify_recovery_code("1234-5678", requested_scopes=["not a scope"])
        with pytest.raises(errors.NoEligibleCredential, match="no recovery credential") as caught:
            await bob.verify_recovery_code("1234-5678", requested_scopes=["user:update"])
        assert caught.value.details["httpStatus"] == 409
    async with StepUpClient(stack.base_url, "not-a-session-token-at-all", http=stack.http) as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.list_credentials()


# --- automatic step-up ------------------------------------------------------------------------


async def test_auto_step_up_prompts_once_and_retries_once(stack: Stack) -> None:
    prompter = ScriptedPrompter(codes=[BOB_PIN], choices=["otp"])
    async with stack.client("bob", prompter=prompter, auto_step_up=True) as bob:
        response = await bob.post("/profile", json={"name": "Bob"})
        assert response.status == 200 and response.json() == {"path": "/profile", "scope": "user:update", "user": "bob"}
        assert response.token_sent is not None
        assert prompter.codes == [] and prompter.choices == []
        # The time-bound token stays in the jar; the next call needs no prompt.
        assert (await bob.post("/profile", scope="user:update")).status == 200


async def test_auto_step_up_retries_only_once(stack: Stack) -> None:
    prompter = ScriptedPrompter(codes=[BOB_PIN], choices=["otp"])
    async with stack.client("bob", prompter=prompter, auto_step_up=True) as bob:
        response = await bob.post("/always-refuses")
        assert response.status == 401
        assert stack.hits["always-refuses"] == 2
        assert isinstance(response.problem(), errors.StepUpRequired)


async def test_without_auto_step_up_a_refusal_is_returned_as_is(stack: Stack) -> None:
    prompter = ScriptedPrompter()
    async with stack.client("bob", prompter=prompter) as bob:
        response: AppResponse = await bob.post("/profile")
        assert response.status == 401 and prompter.asked == []
        with pytest.raises(errors.StepUpRequired):
            response.raise_for_problem()


async def test_every_answer_matched_the_openapi_document(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        await bob.check_step_up_auth("user:update")
        await bob.methods(refresh=True)
        await bob.list_credentials()
        await bob.revoke_grants()
    paths = {path for _, path, _ in stack.validator.seen}
    assert any(p.endswith("/check") for p in paths) and any(p.endswith("/methods") for p in paths)


async def test_is_loading_is_true_while_a_request_is_in_flight(stack: Stack) -> None:
    async with stack.client("bob") as bob:
        stack.watched["client"] = bob
        assert not bob.state.is_loading
        response = await bob.get("/loading")
        assert response.json() == {"isLoading": True}
        assert not bob.state.is_loading


async def test_a_prompt_asks_nothing_when_the_server_needs_no_step_up(stack: Stack) -> None:
    prompter = ScriptedPrompter(codes=[BOB_PIN])
    async with stack.client("bob", prompter=prompter) as bob:
        assert await bob.prompt_step_up_auth("report:view") is None  # an unguarded scope
        assert prompter.asked == []
        token = await bob.prompt_step_up_auth("user:update", method="otp")
        again = await bob.prompt_step_up_auth("user:update")  # a valid token is held
        assert again == token
        assert len(prompter.asked) == 1


# --- the documentation's testing example ------------------------------------------------------------


async def test_the_testing_example_in_the_client_docs_runs() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "client.md").read_text(encoding="utf-8")
    section = page.split("## Testing an application", 1)[1]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:1]
    namespace: dict[str, Any] = {
        "PinVerifier": PinVerifier, "ThrowawayPlugin": ThrowawayPlugin, "StepUpStack": StepUpStack,
        "ScriptedPrompter": ScriptedPrompter,
    }
    exec("async def example():\n" + textwrap.indent(example, "    "), namespace)
    await namespace["example"]()
