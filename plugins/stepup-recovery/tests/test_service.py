"""Recovery codes through StepUpService: single use under concurrency, regeneration, budgets,
format tolerance, the fallback rule, the remaining count and the low-codes warning."""

from __future__ import annotations

import asyncio
import json

import pytest
from stepup_recovery.client import RecoveryClientMethod, RecoveryCodeSheet
from stepup_recovery.codes import normalize_code

from stepup_core import errors
from stepup_core.client.method import ClientContext
from stepup_core.models import (
    ChallengeRequest,
    CredentialFormat,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    IssuedToken,
    Principal,
    Route,
)
from stepup_core.serialization import dumps
from stepup_core.store.sqlite import open_sqlite_store

ALICE = Principal("alice", "s1")
BOB = Principal("bob", "s2")


def code_forms(code: str) -> set[str]:
    bare = code.replace("-", "")
    return {code, bare, code.upper(), bare.upper()}


def raw_values(memory) -> list[str]:
    return list(memory.held_values().values())


def code_records(memory) -> list[str]:
    return [key for key in memory._data if key.startswith("recovery-code:")]


# --- the method --------------------------------------------------------------------------------


async def test_method_is_a_challengeless_mfa_fallback(service):
    info = next(m for m in service.methods() if m.name == "recovery")
    assert info.factor is Factor.MFA
    assert info.fallback is True
    assert info.requires_challenge is False
    assert info.formats == (CredentialFormat.RECOVERY_CODE,)


# --- enrolment -----------------------------------------------------------------------------------


async def test_a_set_is_shown_once_and_stored_only_as_keyed_hashes(flows, memory):
    await flows.add_companion(ALICE)
    start = await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    codes = start.data["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(normalize_code(c) == c.replace("-", "") and len(c) == 11 for c in codes)
    assert start.data["bitsPerCode"] == 50
    # Enrolled at once: the credential comes back with the codes.
    assert start.credential is not None
    assert start.credential.method == "recovery" and start.credential.alias == "Recovery codes"
    assert start.credential.details == {"remaining": 10, "total": 10}
    # Nothing in the store holds a code in any form.
    values = raw_values(memory) + list(memory._data)
    assert not [form for code in codes for form in code_forms(code) for value in values if form in value]
    assert len(code_records(memory)) == 10
    # And they are never shown again.
    listing = await flows.service.list_credentials(ALICE)
    text = dumps(listing)
    assert not [c for c in codes if c in text or c.replace("-", "") in text]
    with pytest.raises(errors.ChallengeNotFound):
        await flows.service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response={}))


async def test_configured_count(make_service, flows_for):
    flows = flows_for(await make_service(plugins={"recovery": {"count": 16, "warn_below": 4}}))
    start = await flows.generate(ALICE)
    assert len(start.data["codes"]) == 16
    assert start.credential is not None and start.credential.details == {"remaining": 16, "total": 16}


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"count": 0}, "plugins.recovery.count"),
        ({"count": 101}, "plugins.recovery.count"),
        ({"count": 5, "warn_below": 6}, "plugins.recovery.warn_below"),
        ({"warn_below": -1}, "plugins.recovery.warn_below"),
        ({"codes": 5}, "plugins.recovery.codes"),
    ],
)
async def test_bad_configuration_names_the_key(make_service, section, key):
    with pytest.raises(errors.ConfigError) as info:
        await make_service(plugins={"recovery": section})
    assert key in str(info.value)


async def test_enrolment_parameters_are_refused(flows):
    with pytest.raises(errors.ValidationError) as info:
        await flows.service.begin_enrollment(ALICE, EnrollmentRequest(method="recovery", params={"count": 3}))
    assert [e["path"] for e in info.value.errors] == ["params.count"]


# --- the fallback rule ---------------------------------------------------------------------------


async def test_refused_when_the_user_has_no_other_mfa_credential(flows):
    start = await flows.generate(ALICE)  # the first credential needs no token
    code = start.data["codes"][0]
    with pytest.raises(errors.MethodNotAllowed) as info:
        await flows.use(ALICE, code)
    assert info.value.code == "method_not_allowed"
    check = await flows.service.check(ALICE, "wallet:export")
    assert check.route is Route.REAUTH  # recovery codes alone do not route to MFA
    # The refused attempt did not use the code up.
    await flows.add_companion(ALICE)
    assert (await flows.use(ALICE, code)).method == "recovery"
    check = await flows.service.check(ALICE, "wallet:export")
    assert check.route is Route.MFA
    assert check.default_credential_id == "cred_companion_alice"  # never the default device


async def test_begin_says_how_many_remain(flows):
    await flows.add_companion(ALICE)
    start = await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    await flows.use(ALICE, start.data["codes"][0])
    challenge = await flows.service.begin(
        ALICE, ChallengeRequest(method="recovery", requested_scopes=("wallet:export",))
    )
    assert challenge.data == {"credentialId": start.credential.id, "remaining": 9}


# --- single use ----------------------------------------------------------------------------------


async def test_each_code_works_once(flows):
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    issued = await flows.use(ALICE, codes[0])
    assert issued.method == "recovery" and issued.scopes == ("wallet:export",)
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.use(ALICE, codes[0])
    assert info.value.code == "verification_failed"
    with pytest.raises(errors.VerificationFailed):
        await flows.use(ALICE, codes[0].upper())  # another spelling is the same code
    assert (await flows.use(ALICE, codes[1])).method == "recovery"


async def _fifty_at_once(flows, code: str) -> list[object]:
    return await asyncio.gather(*(flows.use(ALICE, code) for _ in range(50)), return_exceptions=True)


async def test_fifty_concurrent_submissions_of_one_code_grant_once(make_service, flows_for, plugins):
    # A budget large enough that every submission reaches the verifier.
    flows = flows_for(await make_service(limits={"max_attempts": 100, "lockout_failures": 1000}))
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    results = await _fifty_at_once(flows, codes[0])
    granted = [r for r in results if isinstance(r, IssuedToken)]
    assert len(granted) == 1
    refused = [r for r in results if not isinstance(r, IssuedToken)]
    assert len(refused) == 49
    assert all(type(r) is errors.VerificationFailed for r in refused), {type(r) for r in refused}
    assert len([e for e in plugins.of_type("grant_issued") if e.method == "recovery"]) == 1
    listing = {c.method: c for c in await flows.service.list_credentials(ALICE)}
    assert listing["recovery"].details["remaining"] == 9


async def test_fifty_concurrent_submissions_with_the_default_budget_grant_once(flows):
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    results = await _fifty_at_once(flows, codes[0])
    assert len([r for r in results if isinstance(r, IssuedToken)]) == 1
    assert all(
        isinstance(r, (errors.VerificationFailed, errors.AttemptsExhausted))
        for r in results
        if not isinstance(r, IssuedToken)
    )


async def test_fifty_concurrent_submissions_on_sqlite_grant_once(make_service, flows_for, clock, tmp_path):
    store = await open_sqlite_store(f"sqlite:///{tmp_path / 'stepup.db'}", clock)
    flows = flows_for(
        await make_service(store_=store, limits={"max_attempts": 100, "lockout_failures": 1000})
    )
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    results = await _fifty_at_once(flows, codes[0])
    assert len([r for r in results if isinstance(r, IssuedToken)]) == 1
    assert all(type(r) is errors.VerificationFailed for r in results if not isinstance(r, IssuedToken))


async def test_concurrent_different_codes_all_grant(make_service, flows_for):
    flows = flows_for(await make_service(limits={"max_attempts": 100, "lockout_failures": 1000}))
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    results = await asyncio.gather(*(flows.use(ALICE, c) for c in codes[:6]), return_exceptions=True)
    assert all(isinstance(r, IssuedToken) for r in results)
    # Every use is counted; the published count may lag a concurrent use by one and is refreshed
    # by the next use.
    remaining = {c.method: c for c in await flows.service.list_credentials(ALICE)}["recovery"].details["remaining"]
    assert remaining in (4, 5)
    await flows.use(ALICE, codes[6])
    listing = {c.method: c for c in await flows.service.list_credentials(ALICE)}
    assert listing["recovery"].details["remaining"] == 3


# --- regeneration --------------------------------------------------------------------------------


async def test_regenerating_invalidates_every_earlier_code(make_service, flows_for, memory):
    flows = flows_for(await make_service(limits={"max_attempts": 100, "lockout_failures": 1000}))
    await flows.add_companion(ALICE)
    first = await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    old = first.data["codes"]
    await flows.use(ALICE, old[0])
    second = await flows.regenerate(ALICE)
    new = second.data["codes"]
    assert not set(old) & set(new)
    for code in old[1:]:
        with pytest.raises(errors.VerificationFailed):
            await flows.use(ALICE, code)
    assert len(code_records(memory)) == 10  # the earlier set's records are gone
    recovery = [c for c in await flows.service.list_credentials(ALICE) if c.method == "recovery"]
    assert len(recovery) == 1 and recovery[0].id == second.credential.id
    assert recovery[0].details == {"remaining": 10, "total": 10}
    assert (await flows.use(ALICE, new[0])).method == "recovery"


async def test_a_deleted_set_no_longer_verifies(flows):
    await flows.add_companion(ALICE)
    start = await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    await flows.service.delete_credential(ALICE, start.credential.id, await flows.token(ALICE, "credential:unlink"))
    with pytest.raises(errors.NoEligibleCredential):
        await flows.use(ALICE, start.data["codes"][0])


async def test_another_users_code_does_not_work_and_stays_usable(flows):
    await flows.add_companion(ALICE)
    await flows.add_companion(BOB)
    await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    bobs = (await flows.generate(BOB, await flows.token(BOB, "credential:link"))).data["codes"]
    with pytest.raises(errors.VerificationFailed):
        await flows.use(ALICE, bobs[0])
    assert (await flows.use(BOB, bobs[0])).method == "recovery"


# --- budgets -------------------------------------------------------------------------------------


async def test_wrong_codes_count_toward_the_budget(flows, clock, plugins):
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    wrong = "aaaaa-aaaaa"
    assert wrong not in codes
    for remaining in (4, 3, 2, 1):
        with pytest.raises(errors.VerificationFailed) as info:
            await flows.use(ALICE, wrong)
        assert info.value.details["attemptsRemaining"] == remaining
    with pytest.raises(errors.AttemptsExhausted):
        await flows.use(ALICE, wrong)
    # Even a right code is refused while the budget is spent, and is not used up by that.
    with pytest.raises(errors.AttemptsExhausted):
        await flows.use(ALICE, codes[0])
    assert len([e for e in plugins.of_type("verification_failed") if e.method == "recovery"]) == 5
    clock.advance(301)
    assert (await flows.use(ALICE, codes[0])).method == "recovery"


async def test_malformed_codes_are_named_and_count(flows):
    await flows.add_companion(ALICE)
    await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    for bad in ("abcde", 1234567890, "x" * 1000, "abcde-fghju"):
        with pytest.raises(errors.InvalidResponse) as info:
            await flows.use(ALICE, bad)
        assert info.value.details["field"] == "response.code"
        assert "response.code" in info.value.message
    with pytest.raises(errors.AttemptsExhausted) as exhausted:  # the fifth failure spends the budget
        await flows.use(ALICE, None)
    assert "response.code" in exhausted.value.message


# --- format tolerance ----------------------------------------------------------------------------


async def test_format_tolerance(make_service, flows_for):
    flows = flows_for(await make_service(plugins={"recovery": {"count": 6, "warn_below": 0}}))
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]

    def confusable(code: str) -> str:
        return code.replace("0", "O").replace("1", "l")

    spellings = [
        codes[0].upper(),
        codes[1].replace("-", ""),
        f"  {codes[2][:3]} {codes[2][3:5]}  {codes[2][6:]} ",
        codes[3].replace("-", "--"),
        confusable(codes[4]),
        "".join(chr(ord(ch) + 0xFEE0) if ch != "-" else ch for ch in codes[5]),  # full-width
    ]
    for spelling in spellings:
        assert (await flows.use(ALICE, spelling)).method == "recovery", spelling
    listing = {c.method: c for c in await flows.service.list_credentials(ALICE)}
    assert listing["recovery"].details["remaining"] == 0


# --- remaining count and warnings ----------------------------------------------------------------


async def test_listing_shows_how_many_remain_and_never_the_codes(flows):
    await flows.add_companion(ALICE)
    codes = (await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))).data["codes"]
    for code in codes[:3]:
        await flows.use(ALICE, code)
    recovery = next(c for c in await flows.service.list_credentials(ALICE) if c.method == "recovery")
    assert recovery.details == {"remaining": 7, "total": 10}
    assert recovery.last_used_at is not None
    wire = json.dumps(dumps(await flows.service.list_credentials(ALICE)))
    for code in codes:
        assert not code_forms(code) & set(wire.split('"')), code
        assert code not in wire and code.replace("-", "") not in wire
    check = await flows.service.check(ALICE, "wallet:export")
    assert next(c for c in check.credentials if c.method == "recovery").details["remaining"] == 7


async def test_a_warning_event_when_few_codes_remain(make_service, flows_for, plugins):
    flows = flows_for(await make_service(plugins={"recovery": {"count": 4, "warn_below": 3}}))
    await flows.add_companion(ALICE)
    start = await flows.generate(ALICE, await flows.token(ALICE, "credential:link"))
    codes = start.data["codes"]
    await flows.use(ALICE, codes[0])  # 3 left: not yet below 3
    assert plugins.of_type("recovery_codes_low") == []
    await flows.use(ALICE, codes[1])  # 2 left
    low = plugins.of_type("recovery_codes_low")
    assert len(low) == 1
    event = low[0]
    assert (event.outcome, event.user_id, event.method, event.credential_id) == (
        "warning",
        "alice",
        "recovery",
        start.credential.id,
    )
    assert event.details == {"remaining": 2}
    await flows.use(ALICE, codes[2])
    await flows.use(ALICE, codes[3])
    assert [e.details["remaining"] for e in plugins.of_type("recovery_codes_low")] == [2, 1, 0]
    with pytest.raises(errors.VerificationFailed):
        await flows.use(ALICE, codes[0])


# --- the client half -----------------------------------------------------------------------------


async def test_client_sheet_enrols_and_answers(flows):
    await flows.add_companion(ALICE)
    sheet = RecoveryClientMethod().unattended()
    assert isinstance(sheet, RecoveryCodeSheet)
    await flows.enrol_with_sheet(ALICE, sheet, await flows.token(ALICE, "credential:link"))
    assert sheet.remaining == 10
    method = RecoveryClientMethod()
    for _ in range(2):
        answer = await method.answer({"method": "recovery"}, ClientContext(prompter=None, actor=sheet))  # type: ignore[arg-type]
        assert (await flows.use(ALICE, answer.response["code"])).method == "recovery"
    assert sheet.remaining == 8
    # Regenerating through the client replaces the sheet, as it does on the server.
    old = list(sheet.codes)
    await flows.enrol_with_sheet(ALICE, sheet, await flows.token(ALICE, "credential:link"))
    assert sheet.remaining == 10 and not set(old) & set(sheet.codes)
