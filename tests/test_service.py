"""StepUpService with throwaway methods: routing, defaults, budgets, lockout, expiry, scope
confinement, single use, binding, fail-closed checks."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import attrs
import pytest

from stepup_core import errors
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.crypto import token_hash
from stepup_core.hookspecs import hookimpl
from stepup_core.models import (
    ChallengeRequest,
    ChallengeStatus,
    Credential,
    CredentialFormat,
    CredentialUpdate,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    Principal,
    Route,
    StepUpVote,
    VerifyRequest,
)
from stepup_core.service import StepUpService
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import APPROVED, PinVerifier, RedirectVerifier, ThrowawayPlugin, ThrowawayVerifier
from stepup_core.verifier import Attempt, EnrollmentStep, NewCredential, Verification, VerifierContext

ALICE = Principal("alice", "s1")
BOB = Principal("bob", "s9")


@attrs.define
class MailVerifier(ThrowawayVerifier):
    """A re-auth method with a server challenge: the code is kept hashed in the challenge."""

    name: str = "mail"
    challenge_ttl: float = 600.0
    package: str = "stepup-mail"
    sent: list[str] = attrs.field(factory=list)
    crash_on_begin: bool = False

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        if self.crash_on_begin:
            raise errors.DeliveryFailed("mail server down")
        code = f"{len(self.sent):06d}"
        self.sent.append(code)
        assert attempt.challenge is not None
        attempt.challenge.state["hash"] = ctx.keys.keyed_hash("mail", code)
        return {"destination": "a***@example.com"}

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        assert attempt.challenge is not None and attempt.credential is not None
        if ctx.keys.keyed_hash("mail", str(attempt.params.get("code"))) != attempt.challenge.state["hash"]:
            raise errors.VerificationFailed("wrong code")
        return Verification(attempt.credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        return EnrollmentStep(credential=NewCredential(format=CredentialFormat.EMAIL, identifier="x@example.com"))

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        raise AssertionError("not used")


@pytest.fixture
def methods() -> ThrowawayPlugin:
    """``pin``: an MFA PIN with no challenge; ``mail``: a code sent per challenge; ``redirect``."""
    pin = PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), requires_challenge=False,
                      sign_in=False, confirm=True)
    return ThrowawayPlugin([pin, MailVerifier(), RedirectVerifier()])


@pytest.fixture
def store(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"declared_scopes": ["billing:payout"],
            "scopes": {"billing:refund": {"allowed_methods": ["pin"]}, "org:admin": {"min_factor": "mfa"},
                       "public:read": {"required": False}},
            "server": {"public_url": "https://app.example"}}


async def enrol_pin(service: StepUpService, principal: Principal, pin: str = "2468", token: str | None = None) -> str:
    start = await service.begin_enrollment(principal, EnrollmentRequest(method="pin", params={"pin": pin}), token)
    view = await service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion({"pin": pin}))
    return view.id


def email_credential(user: str, cid: str = "email-1", sign_in: bool = True) -> Credential:
    return Credential(id=cid, user_id=user, method="", format=CredentialFormat.EMAIL, factor=Factor.REAUTH,
                      created_at=1.0, sign_in=sign_in, alias="a***@example.com", identifier="a@example.com")


def sent_code(methods: ThrowawayPlugin) -> str:
    """The code the mail method sent last."""
    return str(methods.verifier("mail").sent[-1])


async def mail_token(
    service: StepUpService, methods: ThrowawayPlugin, principal: Principal, scopes: tuple[str, ...]
) -> str:
    start = await service.begin(principal, ChallengeRequest(method="mail", requested_scopes=scopes))
    issued = await service.verify(principal, VerifyRequest(method="mail", challenge_id=start.challenge_id,
                                                           response={"code": sent_code(methods)}))
    return issued.elevated_access_token


async def pin_token(service: StepUpService, principal: Principal, scopes: tuple[str, ...], pin: str = "2468") -> str:
    issued = await service.verify(principal, VerifyRequest(method="pin", response={"code": pin},
                                                           requested_scopes=scopes))
    return issued.elevated_access_token


# --- routing and defaults --------------------------------------------------------------


async def test_user_without_credentials_is_routed_to_reauth_with_nothing_eligible(service):
    result = await service.check(ALICE, "wallet:export")
    assert result.is_required and result.route is Route.REAUTH
    assert result.credentials == () and result.default_credential_id is None


async def test_reauth_default_is_the_sessions_sign_in_credential(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice", "email-1"), email_credential("alice", "email-2")]
    result = await service.check(Principal("alice", "s1", sign_in_credential_id="email-2"), "user:update")
    assert result.route is Route.REAUTH
    assert [c.id for c in result.credentials] == ["email-1", "email-2"]
    assert result.default_credential_id == "email-2"
    assert result.methods == ("mail",)


async def test_mfa_route_defaults_to_most_recent_device_then_configured_default(service, methods, clock):
    methods.app_credentials["alice"] = [email_credential("alice")]
    # a user who signed in with email re-authenticates before enrolling an MFA device
    first = await enrol_pin(service, ALICE, "1111", token=await mail_token(service, methods, ALICE,
                                                                             ("credential:link",)))
    token = await pin_token(service, ALICE, ("credential:link", "credential:update"), "1111")
    clock.advance(5)
    second = await enrol_pin(service, ALICE, "2222", token=token)
    result = await service.check(ALICE, "wallet:export")
    assert result.route is Route.MFA
    assert {c.id for c in result.credentials} == {first, second}  # email is not eligible once MFA exists
    assert result.default_credential_id == second
    await service.update_credential(ALICE, first, CredentialUpdate(is_default=True), token)
    assert (await service.check(ALICE, "wallet:export")).default_credential_id == first


async def test_reauth_method_cannot_mint_when_user_has_mfa(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    await enrol_pin(service, ALICE, token=await mail_token(service, methods, ALICE, ("credential:link",)))
    with pytest.raises(errors.MethodNotAllowed, match="has MFA"):
        await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))


# --- verification, tokens, single use -----------------------------------------------------


async def test_verify_mints_time_bound_token_and_check_sees_it(service, store):
    await enrol_pin(service, ALICE)
    issued = await service.verify(ALICE, VerifyRequest(method="pin", response={"code": "2468"},
                                                       requested_scopes=("user:update",)))
    assert issued.elevated_access_token.startswith("sut_") and not issued.single_use
    assert issued.expires_at == pytest.approx(service.clock.now() + 600)
    raw = json.dumps(await store.list_index("grants-user:alice"))
    assert issued.elevated_access_token not in raw and token_hash(issued.elevated_access_token) in raw
    assert not (await service.check(ALICE, "user:update", issued.elevated_access_token)).is_required
    # the token is bound to its scope, user and session
    assert (await service.check(ALICE, "user:delete", issued.elevated_access_token)).is_required
    assert (await service.check(Principal("alice", "other"), "user:update", issued.elevated_access_token)).is_required
    assert (await service.check(BOB, "user:update", issued.elevated_access_token)).is_required


async def test_wallet_scopes_get_single_use_token_consumed_exactly_once(service):
    await enrol_pin(service, ALICE)
    issued = await service.verify(ALICE, VerifyRequest(method="pin", response={"code": "2468"},
                                                       requested_scopes=("wallet:export",)))
    assert issued.single_use and issued.expires_at == pytest.approx(service.clock.now() + 300)
    results = await asyncio.gather(
        *[service.require_scope(ALICE, "wallet:export", issued.elevated_access_token) for _ in range(20)],
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    assert len(granted) == 1
    assert all(isinstance(r, errors.StepUpRequired) for r in results if isinstance(r, BaseException))


async def test_token_expires_with_the_clock(service, clock):
    await enrol_pin(service, ALICE)
    token = await pin_token(service, ALICE, ("user:update",))
    clock.advance(599)
    assert await service.require_scope(ALICE, "user:update", token) is not None
    clock.advance(2)
    with pytest.raises(errors.StepUpRequired) as info:
        await service.require_scope(ALICE, "user:update", token)
    assert info.value.check["isRequired"] is True and info.value.check["route"] == "mfa"


async def test_unguarded_scope_needs_no_token(service):
    assert await service.require_scope(ALICE, "public:read", None) is None
    assert not (await service.check(ALICE, "public:read")).is_required


async def test_revoke_grants_of_the_session(service):
    await enrol_pin(service, ALICE)
    token = await pin_token(service, ALICE, ("user:update",))
    assert len(await service.tokens.list_session("alice", "s1")) == 1
    assert await service.revoke_grants(ALICE) == 1
    with pytest.raises(errors.StepUpRequired):
        await service.require_scope(ALICE, "user:update", token)


# --- challenges: expiry, single use, binding -----------------------------------------------


async def test_challenge_is_single_use(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    code = sent_code(methods)
    request = VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": code})
    await service.verify(ALICE, request)
    with pytest.raises(errors.ChallengeNotFound):
        await service.verify(ALICE, request)


async def test_concurrent_verification_of_one_challenge_mints_once(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    request = VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": sent_code(methods)})
    results = await asyncio.gather(*[service.verify(ALICE, request) for _ in range(10)], return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_challenge_expires(service, methods, clock):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    clock.advance(601)
    with pytest.raises(errors.ChallengeExpired):
        await service.verify(ALICE, VerifyRequest(method="mail", challenge_id=start.challenge_id,
                                                  response={"code": sent_code(methods)}))


async def test_challenge_is_bound_to_user_and_session(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    methods.app_credentials["bob"] = [email_credential("bob")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    request = VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": sent_code(methods)})
    with pytest.raises(errors.ChallengeNotFound):
        await service.verify(BOB, request)
    with pytest.raises(errors.ChallengeNotFound):
        await service.verify(Principal("alice", "another-session"), request)
    assert (await service.verify(ALICE, request)).scopes == ("user:update",)


async def test_verify_cannot_widen_the_challenges_scopes(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    with pytest.raises(errors.InvalidScope):
        await service.verify(ALICE, VerifyRequest(method="mail", challenge_id=start.challenge_id,
                                                  response={"code": sent_code(methods)},
                                                  requested_scopes=("user:delete",)))


async def test_failed_begin_leaves_no_challenge(service, methods, store):
    methods.app_credentials["alice"] = [email_credential("alice")]
    methods.verifier("mail").crash_on_begin = True
    with pytest.raises(errors.DeliveryFailed):
        await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    assert not [k for k in store._data if k.startswith("challenge:")]


# --- budgets and lockout --------------------------------------------------------------------


async def test_attempt_budget_per_challenge(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    wrong = VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": "nope"})
    for remaining in (4, 3, 2, 1):
        with pytest.raises(errors.VerificationFailed) as info:
            await service.verify(ALICE, wrong)
        assert info.value.details["attemptsRemaining"] == remaining
    with pytest.raises(errors.AttemptsExhausted):
        await service.verify(ALICE, wrong)
    right = VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": sent_code(methods)})
    with pytest.raises(errors.AttemptsExhausted):
        await service.verify(ALICE, right)
    assert "attempts_exhausted" in methods.types()


async def test_concurrent_guesses_cannot_exceed_the_budget(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    guesses = [VerifyRequest(method="mail", challenge_id=start.challenge_id, response={"code": f"{i:06d}x"})
               for i in range(40)]
    results = await asyncio.gather(*[service.verify(ALICE, g) for g in guesses], return_exceptions=True)
    verified_by_method = [r for r in results if isinstance(r, errors.VerificationFailed)
                          and not isinstance(r, errors.AttemptsExhausted)]
    assert len(verified_by_method) <= 5
    assert sum(isinstance(r, errors.AttemptsExhausted) for r in results) >= 35


async def test_budget_for_challengeless_method_and_success_does_not_spend_it(service):
    await enrol_pin(service, ALICE)
    for _ in range(8):  # successes do not use up the budget
        await pin_token(service, ALICE, ("user:update",))
    for _ in range(4):
        with pytest.raises(errors.VerificationFailed):
            await pin_token(service, ALICE, ("user:update",), pin="0000")
    with pytest.raises(errors.AttemptsExhausted):
        await pin_token(service, ALICE, ("user:update",), pin="0000")
    with pytest.raises(errors.AttemptsExhausted):
        await pin_token(service, ALICE, ("user:update",))  # the right PIN too: brute force stops here


async def test_lockout_after_ten_failures_in_the_window(service, methods, clock):
    methods.app_credentials["alice"] = [email_credential("alice")]
    for _ in range(5):
        start = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
        for _ in range(2):
            with pytest.raises(errors.VerificationFailed):
                await service.verify(ALICE, VerifyRequest(method="mail", challenge_id=start.challenge_id,
                                                          response={"code": "bad"}))
    assert "locked_out" in methods.types()
    with pytest.raises(errors.LockedOut):
        await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    # another user is not affected
    methods.app_credentials["bob"] = [email_credential("bob")]
    await service.begin(BOB, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
    clock.advance(901)
    await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))


# --- scope policy ---------------------------------------------------------------------------


async def test_scope_policy_confines_methods(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    with pytest.raises(errors.MethodNotAllowed, match="billing:refund"):
        await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("billing:refund",)))
    with pytest.raises(errors.MethodNotAllowed, match="org:admin"):
        await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("org:admin",)))


async def test_unknown_and_malformed_scopes_are_refused(service):
    with pytest.raises(errors.InvalidScope, match="unknown scope"):
        await service.check(ALICE, "billing:unknown")
    with pytest.raises(errors.InvalidScope, match="not a valid scope"):
        await service.check(ALICE, "Wallet Export")
    assert (await service.check(ALICE, "billing:payout")).is_required


async def test_verify_needs_scopes_and_challenge_for_challenge_methods(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    with pytest.raises(errors.ValidationError) as info:
        await service.verify(ALICE, VerifyRequest(method="mail", response={"code": "1"},
                                                  requested_scopes=("user:update",)))
    assert info.value.errors[0]["path"] == "challengeId"
    await enrol_pin(service, Principal("carol", "s"))
    with pytest.raises(errors.ValidationError) as info:
        await service.verify(Principal("carol", "s"), VerifyRequest(method="pin", response={"code": "2468"}))
    assert info.value.errors[0]["path"] == "requestedScopes"


async def test_unknown_method_names_the_package(service):
    with pytest.raises(errors.UnknownMethod, match=r"pip install \./plugins/stepup-passkey") as caught:
        await service.begin(ALICE, ChallengeRequest(method="passkey"))
    assert "--find-links dist stepup-passkey" in str(caught.value)


# --- fail closed ------------------------------------------------------------------------------


class ExplodingStore(MemoryStore):
    async def get(self, key: str) -> str | None:
        raise errors.StoreUnavailable("store down")

    async def list_index(self, index: str) -> dict[str, str]:
        raise errors.StoreUnavailable("store down")

    async def ping(self) -> None:
        raise errors.StoreUnavailable("store down")


async def test_check_fails_closed_when_the_store_raises(pm, clock, methods):
    svc = await StepUpService.create(config_from_mapping({"secret_key": "k" * 43}), pm=pm, clock=clock,
                                     store=ExplodingStore(clock=clock))
    result = await svc.check(ALICE, "user:update", "sut_whatever")
    assert result.is_required and result.reasons == ("check_failed",)
    assert "check_failed" in methods.types()
    with pytest.raises(errors.StoreUnavailable):
        await svc.require_scope(ALICE, "user:update", "sut_whatever")


def test_a_verifier_without_a_credential_to_check_fails_closed():
    with pytest.raises(errors.NoEligibleCredential):
        Attempt(ALICE, None, (), {}).require_credential()
    credential = email_credential("alice")
    assert Attempt(ALICE, credential, (credential,), {}).require_credential() is credential


class BrokenVote:
    @hookimpl
    def stepup_check(self, principal: Principal, scope: str, policy: Any) -> StepUpVote:
        raise RuntimeError("risk engine down")


class FreshVote:
    @hookimpl
    def stepup_check(self, principal: Principal, scope: str, policy: Any) -> StepUpVote:
        return StepUpVote(required=True, reason="risky_ip", accept_existing_token=False)


async def test_check_fails_closed_when_a_hook_raises(service, pm):
    await enrol_pin(service, ALICE)
    token = await pin_token(service, ALICE, ("user:update",))
    pm.register(BrokenVote(), name="broken")
    try:
        assert (await service.check(ALICE, "user:update", token)).is_required
        with pytest.raises(errors.StepUpRequired):
            await service.require_scope(ALICE, "user:update", token)
    finally:
        pm.unregister(name="broken")
    assert await service.require_scope(ALICE, "user:update", token) is not None


async def test_a_vote_can_demand_fresh_verification_despite_a_token(service, pm):
    await enrol_pin(service, ALICE)
    token = await pin_token(service, ALICE, ("user:update",))
    pm.register(FreshVote(), name="fresh")
    try:
        result = await service.check(ALICE, "user:update", token)
        assert result.is_required and "risky_ip" in result.reasons
    finally:
        pm.unregister(name="fresh")


async def test_a_crashing_verifier_never_grants(service, monkeypatch):
    await enrol_pin(service, ALICE)

    async def explode(self: Any, ctx: Any, attempt: Any) -> Verification:
        raise KeyError("boom")

    monkeypatch.setattr(PinVerifier, "verify", explode)
    with pytest.raises(errors.VerificationFailed):
        await pin_token(service, ALICE, ("user:update",))


async def test_verifier_cannot_prove_another_users_credential(service, monkeypatch):
    bob_pin = await enrol_pin(service, BOB)
    await enrol_pin(service, ALICE)

    async def lie(self: Any, ctx: Any, attempt: Any) -> Verification:
        return Verification(bob_pin)

    monkeypatch.setattr(PinVerifier, "verify", lie)
    with pytest.raises(errors.VerificationFailed, match="does not hold"):
        await pin_token(service, ALICE, ("user:update",))


# --- enrolment and credential management -----------------------------------------------------


async def test_second_enrolment_needs_a_link_token(service):
    await enrol_pin(service, ALICE)
    with pytest.raises(errors.StepUpRequired) as info:
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="pin", params={"pin": "9"}))
    assert info.value.scope == "credential:link"
    token = await pin_token(service, ALICE, ("credential:link",))
    await enrol_pin(service, ALICE, "1357", token=token)
    assert len(await service.list_credentials(ALICE)) == 2


async def test_enrolment_completion_budget_and_single_use(service):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="pin", params={"pin": "1111"}))
    for _ in range(4):
        with pytest.raises(errors.VerificationFailed):
            await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion({"pin": "2222"}))
    with pytest.raises(errors.AttemptsExhausted):
        await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion({"pin": "2222"}))
    again = await service.begin_enrollment(ALICE, EnrollmentRequest(method="pin", params={"pin": "1111"},
                                                                    alias="Desk"))
    view = await service.complete_enrollment(ALICE, again.enrollment_id, EnrollmentCompletion({"pin": "1111"}))
    assert view.alias == "Desk"
    with pytest.raises(errors.ChallengeNotFound):
        await service.complete_enrollment(ALICE, again.enrollment_id, EnrollmentCompletion({"pin": "1111"}))


async def test_delete_needs_unlink_token_and_deleted_credential_stops_verifying(service):
    cred = await enrol_pin(service, ALICE)
    with pytest.raises(errors.StepUpRequired):
        await service.delete_credential(ALICE, cred)
    token = await pin_token(service, ALICE, ("credential:unlink",))
    await service.delete_credential(ALICE, cred, token)
    with pytest.raises(errors.NoEligibleCredential):
        await pin_token(service, ALICE, ("user:update",))


async def test_application_credentials_cannot_be_deleted_here(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    with pytest.raises(errors.MethodNotAllowed, match="managed by the application"):
        await service.delete_credential(ALICE, "email-1", None)


async def test_credential_listing_never_shows_secrets(service, methods):
    methods.app_credentials["alice"] = [email_credential("alice")]
    await enrol_pin(service, ALICE, token=await mail_token(service, methods, ALICE, ("credential:link",)))
    listing = json.dumps([attrs.asdict(v) for v in await service.list_credentials(ALICE)], default=str)
    assert "a@example.com" not in listing and "hash" not in listing and "pinHash" not in listing


# --- redirect methods: callback then pickup ------------------------------------------------------


async def test_redirect_callback_completes_and_grant_is_picked_up_once(service, methods):
    methods.app_credentials["alice"] = [
        Credential(id="gh", user_id="alice", method="", format=CredentialFormat.OAUTH, factor=Factor.REAUTH,
                   created_at=1.0)
    ]
    start = await service.begin(ALICE, ChallengeRequest(method="redirect", requested_scopes=("user:update",)))
    state = start.data["authorizationUrl"].split("state=")[1]
    status = await service.challenge_status(ALICE, start.challenge_id)
    assert status.status is ChallengeStatus.PENDING and status.grant is None
    with pytest.raises(errors.ChallengeNotFound):
        await service.challenge_status(BOB, start.challenge_id)
    await service.complete_callback("redirect", {"state": state, "code": APPROVED})
    with pytest.raises(errors.ChallengeNotFound):  # the state is used once
        await service.complete_callback("redirect", {"state": state, "code": APPROVED})
    picked = await service.challenge_status(ALICE, start.challenge_id)
    assert picked.grant is not None and picked.grant.scopes == ("user:update",)
    with pytest.raises(errors.ChallengeNotFound):
        await service.challenge_status(ALICE, start.challenge_id)


async def test_redirect_callback_failure_marks_challenge_failed(service, methods):
    methods.app_credentials["alice"] = [
        Credential(id="gh", user_id="alice", method="", format=CredentialFormat.OAUTH, factor=Factor.REAUTH,
                   created_at=1.0)
    ]
    start = await service.begin(ALICE, ChallengeRequest(method="redirect", requested_scopes=("user:update",)))
    state = start.data["authorizationUrl"].split("state=")[1]
    with pytest.raises(errors.VerificationFailed):
        await service.complete_callback("redirect", {"state": state, "code": "bad"})
    status = await service.challenge_status(ALICE, start.challenge_id)
    assert status.status is ChallengeStatus.FAILED and status.grant is None


# --- audit -----------------------------------------------------------------------------------------


async def test_every_outcome_emits_an_event_and_the_builtin_logs_json(service, methods, caplog):
    caplog.set_level(logging.INFO, logger="stepup.audit")
    await enrol_pin(service, ALICE)
    await pin_token(service, ALICE, ("user:update",))
    with pytest.raises(errors.VerificationFailed):
        await pin_token(service, ALICE, ("user:update",), pin="0")
    assert {"credential_enrolled", "grant_issued", "verification_failed"} <= set(methods.types())
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "stepup.audit"]
    assert {line["type"] for line in lines} >= {"grant_issued", "verification_failed"}
    assert all("elevatedAccessToken" not in json.dumps(line) for line in lines)


async def test_dev_mode_without_secret_key_warns_and_keeps_one_key(pm, clock, caplog):
    store = MemoryStore(clock=clock)
    caplog.set_level(logging.WARNING, logger="stepup")
    a = await StepUpService.create(config_from_mapping({}), pm=pm, clock=clock, store=store)
    b = await StepUpService.create(config_from_mapping({}), pm=pm, clock=clock, store=store)
    assert "no secret_key configured" in caplog.text
    assert a.keys.keyed_hash("x", "y") == b.keys.keyed_hash("x", "y")
    assert a.keys.seal("p", b"secret").startswith("plain:")


async def test_a_verified_redirect_grant_is_not_handed_out_after_the_challenge_expired(service, methods, clock):
    methods.app_credentials["alice"] = [
        Credential(id="gh", user_id="alice", method="", format=CredentialFormat.OAUTH, factor=Factor.REAUTH,
                   created_at=1.0)
    ]
    start = await service.begin(ALICE, ChallengeRequest(method="redirect", requested_scopes=("user:update",)))
    state = start.data["authorizationUrl"].split("state=")[1]
    await service.complete_callback("redirect", {"state": state, "code": "approved"})
    clock.advance(start.expires_at - clock.now() + 1)
    with pytest.raises(errors.ChallengeExpired):
        await service.challenge_status(ALICE, start.challenge_id)
    assert not [e for e in methods.events if e.type == "grant_issued"]


async def test_a_locked_out_user_cannot_complete_a_redirect_challenge(service, methods):
    methods.app_credentials["alice"] = [
        email_credential("alice"),
        Credential(id="gh", user_id="alice", method="", format=CredentialFormat.OAUTH, factor=Factor.REAUTH,
                   created_at=1.0),
    ]
    start = await service.begin(ALICE, ChallengeRequest(method="redirect", requested_scopes=("user:update",)))
    state = start.data["authorizationUrl"].split("state=")[1]
    for _ in range(5):  # ten wrong codes lock alice out while the redirect challenge is pending
        mail = await service.begin(ALICE, ChallengeRequest(method="mail", requested_scopes=("user:update",)))
        for _ in range(2):
            with pytest.raises(errors.VerificationFailed):
                await service.verify(ALICE, VerifyRequest(method="mail", challenge_id=mail.challenge_id,
                                                          response={"code": "bad"}))
    with pytest.raises(errors.LockedOut):
        await service.complete_callback("redirect", {"state": state, "code": "approved"})
    status = await service.challenge_status(ALICE, start.challenge_id)
    assert status.grant is None and status.status is ChallengeStatus.FAILED
    assert not [e for e in methods.events if e.type == "grant_issued"]


async def test_an_outage_of_the_method_spends_neither_attempts_nor_lockout(service, methods, monkeypatch):
    await enrol_pin(service, ALICE)
    real_verify = PinVerifier.verify

    async def unavailable(self: Any, ctx: Any, attempt: Any) -> Verification:
        raise errors.ProviderUnavailable("the upstream is down")

    monkeypatch.setattr(PinVerifier, "verify", unavailable)
    for _ in range(12):  # more than the budget (5) and the lockout (10)
        with pytest.raises(errors.ProviderUnavailable):
            await pin_token(service, ALICE, ("user:update",))
    monkeypatch.setattr(PinVerifier, "verify", real_verify)
    assert (await pin_token(service, ALICE, ("user:update",))).startswith("sut_")
    for _ in range(4):  # the whole budget is still there
        with pytest.raises(errors.VerificationFailed) as info:
            await pin_token(service, ALICE, ("user:update",), pin="0000")
        assert not isinstance(info.value, errors.AttemptsExhausted)
    with pytest.raises(errors.AttemptsExhausted):
        await pin_token(service, ALICE, ("user:update",), pin="0000")
