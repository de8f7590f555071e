"""The seams: one decision over the votes (stepup_check once per protected request), the
verifier base class and its helpers, ``Begun``, and the client's lenient reading of answers."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from stepup_core import errors, hookimpl
from stepup_core.client.api import lenient
from stepup_core.gate import decide
from stepup_core.models import (
    ChallengeRequest,
    CheckResult,
    CredentialFormat,
    EnrollmentRequest,
    Factor,
    Principal,
    Route,
    StepUpVote,
)
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.verifier import (
    MAX_ALIAS_LENGTH,
    Attempt,
    BaseVerifier,
    Begun,
    Verification,
    VerifierContext,
    check_alias,
    digit_code,
    read_code,
)

ALICE = Principal("alice", "s1")
KEY = {"secret_key": "ab" * 32}


# --- the decision ----------------------------------------------------------------------------


def vote(required: bool, accept: bool = True, reason: str = "policy") -> StepUpVote:
    return StepUpVote(required=required, reason=reason, accept_existing_token=accept)


def test_no_demanding_vote_needs_no_step_up_token_or_not() -> None:
    decision = decide([vote(False), vote(False, accept=False)])
    assert not decision.required(False) and not decision.required(True)


def test_a_held_token_satisfies_votes_that_accept_it() -> None:
    decision = decide([vote(True), vote(False, accept=False)])
    assert decision.required(False) and not decision.required(True)
    assert decision.reasons == ("policy",)


def test_one_vote_asking_for_fresh_verification_refuses_held_tokens() -> None:
    decision = decide([vote(True), vote(True, accept=False, reason="risk")])
    assert decision.required(True) and decision.reasons == ("policy", "risk")


@attrs.define(eq=False)
class CountingVoter:
    scopes: list[str] = attrs.field(factory=list)

    @hookimpl
    def stepup_check(self, principal: Principal, scope: str, policy: Any) -> StepUpVote | None:
        self.scopes.append(scope)
        return None


async def test_stepup_check_runs_once_per_protected_request(stepup_service_factory: Any) -> None:
    voter = CountingVoter()
    service = await stepup_service_factory(KEY, plugins=[("voter", voter)])
    issued = await service.tokens.mint(ALICE, ("user:update",), method="pin", ttl=600, single_use=False)

    assert await service.require_scope(ALICE, "user:update", issued.elevated_access_token) is not None
    assert voter.scopes == ["user:update"]

    with pytest.raises(errors.StepUpRequired) as refused:
        await service.require_scope(ALICE, "user:update", None)
    assert voter.scopes == ["user:update", "user:update"]  # the refusal's check reused the votes
    assert refused.value.check is not None and refused.value.check["isRequired"] is True


# --- the verifier base class -----------------------------------------------------------------


class Minimal(BaseVerifier):
    name = "minimal"
    factor = Factor.REAUTH
    formats = (CredentialFormat.EMAIL,)

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        return Verification(attempt.require_credential().id)


async def test_a_verifier_states_only_what_differs_from_the_defaults(stepup_service_factory: Any) -> None:
    service = await stepup_service_factory(KEY, plugins=[ThrowawayPlugin([Minimal()])])
    [info] = service.methods()
    assert (info.name, info.package, info.interaction.value, info.requires_challenge) == (
        "minimal", "stepup-minimal", "code", True
    )
    with pytest.raises(errors.EnrollmentFailed):
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="minimal"))


@attrs.define
class Binding(PinVerifier):
    """Binds its challenge to whatever credential id it is told to."""

    name: str = "binding"
    bind_to: str = "someone-elses"

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        return Begun(data={"shown": True}, state={"secret": "kept"}, credential_id=self.bind_to)


async def test_begin_may_not_bind_a_challenge_to_a_credential_the_user_does_not_hold(
    stepup_service_factory: Any,
) -> None:
    binding = Binding(factor=Factor.MFA)
    service = await stepup_service_factory(KEY, plugins=[ThrowawayPlugin([binding])])
    await service.begin_enrollment(ALICE, EnrollmentRequest(method="binding", params={"pin": "1234"}))
    with pytest.raises(errors.PluginError, match="another user"):
        await service.begin(ALICE, ChallengeRequest(method="binding", requested_scopes=("user:update",)))

    [own] = await service.list_credentials(ALICE)
    binding.bind_to = own.id
    start = await service.begin(ALICE, ChallengeRequest(method="binding", requested_scopes=("user:update",)))
    assert start.data == {"shown": True} and start.credential_id == own.id
    kept = await service.challenges.load(ALICE, start.challenge_id, None)
    assert kept.state == {"secret": "kept"}  # private state stays with the core, not on the wire


def test_the_shared_code_reader_names_the_field_and_normalises() -> None:
    six = digit_code(6)
    assert read_code({"code": "123 456"}, "six digits", six) == "123456"
    assert read_code({"code": "123-456"}, "six digits", six) == "123456"
    for params in ({}, {"code": 123456}, {"code": "12345"}, {"code": "\uff11\uff12\uff13\uff14\uff15\uff16"}):
        with pytest.raises(errors.InvalidResponse) as info:
            read_code(params, "six digits", six)
        assert info.value.details["field"] == "response.code"


def test_one_alias_rule_with_one_limit() -> None:
    assert check_alias("x" * MAX_ALIAS_LENGTH) == "x" * 64 and check_alias(None) is None
    for bad in ("x" * (MAX_ALIAS_LENGTH + 1), "   ", 7):
        with pytest.raises(errors.ValidationError) as info:
            check_alias(bad, "params.alias")
        assert info.value.errors[0]["path"] == "params.alias"


# --- the client reads answers leniently --------------------------------------------------------


def test_members_a_newer_server_adds_are_ignored_at_every_depth() -> None:
    wire = {
        "scope": "user:update",
        "isRequired": True,
        "route": "mfa",
        "credentials": [
            {"id": "c1", "method": "pin", "format": "totp", "factor": "mfa", "shinyNewMember": {"a": 1}},
        ],
        "futureField": [1, 2],
    }
    result = lenient(wire, CheckResult)
    assert result.route is Route.MFA and [c.id for c in result.credentials] == ["c1"]
