"""The totp method through StepUpService, with an injected clock and a memory store."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from stepup_totp.client import AuthenticatorApp
from stepup_totp.otp import code_at, decode_secret
from stepup_totp.verifier import SEAL_PURPOSE

from stepup_core import errors
from stepup_core.clock import ManualClock
from stepup_core.models import (
    ChallengeRequest,
    Credential,
    CredentialFormat,
    CredentialUpdate,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    Interaction,
    Principal,
    Route,
    VerifyRequest,
)
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.vectors import load_vectors, vector_cases

ALICE = Principal("alice", "s1")
BOB = Principal("bob", "s2")


def other_code(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


# --- the method ------------------------------------------------------------------------------


async def test_method_is_registered_as_challengeless_mfa(service):
    info = next(m for m in service.methods() if m.name == "totp")
    assert info.factor is Factor.MFA
    assert info.formats == (CredentialFormat.TOTP,)
    assert info.interaction is Interaction.CODE
    assert info.requires_challenge is False
    assert info.fallback is False
    assert info.plugin == "totp"


def test_registering_the_plugin_imports_neither_pyotp_nor_segno():
    script = (
        "import asyncio, sys\n"
        "from stepup_core.plugins import get_plugin_manager\n"
        "from stepup_core.config import config_from_mapping\n"
        "from stepup_core.service import StepUpService\n"
        "import stepup_totp.plugin\n"
        "pm = get_plugin_manager(load_entrypoints=False)\n"
        "pm.register(stepup_totp.plugin, name='totp')\n"
        "async def main():\n"
        "    svc = await StepUpService.create(config_from_mapping({'store': 'memory:'}), pm=pm)\n"
        "    assert 'totp' in svc.verifiers\n"
        "    methods = []\n"
        "    pm.hook.stepup_register_client_methods(register=methods.append)\n"
        "    assert [m.name for m in methods] == ['totp']\n"
        "asyncio.run(main())\n"
        "loaded = sorted(m for m in ('pyotp', 'segno') if m in sys.modules)\n"
        "print(','.join(loaded) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


# --- enrolment -------------------------------------------------------------------------------


async def test_enrolment_offers_uri_qr_codes_and_secret(service, clock):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp", params={"alias": "Phone"}))
    data = start.data
    assert data["enrollmentId"] == start.enrollment_id
    uri = urlparse(data["otpauthUri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Example%20Wallet:alice")
    query = parse_qs(uri.query)
    assert query == {"secret": [data["secret"]], "issuer": ["Example Wallet"]}
    assert len(decode_secret(data["secret"])) * 8 >= 160
    assert data["qrSvg"].startswith("data:image/svg+xml")
    assert "█" in data["qrText"] and data["qrText"].count("\n") > 10
    assert (data["digits"], data["algorithm"], data["period"]) == (6, "SHA1", 30)
    assert start.credential is None  # not enrolled until a code confirms it
    assert await service.list_credentials(ALICE) == []
    # Two enrolments never share a secret.
    again = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    assert again.data["secret"] != data["secret"]


async def test_enrolment_completes_only_with_a_valid_current_code(service, clock, events):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp", params={"alias": "Phone"}))
    secret = start.data["secret"]

    async def complete(code: Any) -> Any:
        return await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": code})
        )

    with pytest.raises(errors.VerificationFailed) as wrong:
        await complete(other_code(code_at(secret, clock.now())))
    assert wrong.value.code == "verification_failed"
    with pytest.raises(errors.VerificationFailed):
        await complete(code_at(secret, clock.now() - 60))  # stale: outside the window
    with pytest.raises(errors.VerificationFailed):
        await complete(code_at(secret, clock.now() + 60))
    with pytest.raises(errors.InvalidResponse) as malformed:
        await complete("12ab56")
    assert malformed.value.details["field"] == "response.code"
    assert await service.list_credentials(ALICE) == []

    view = await complete(code_at(secret, clock.now()))
    assert view.method == "totp" and view.format is CredentialFormat.TOTP and view.alias == "Phone"
    assert view.details == {"digits": 6, "algorithm": "SHA1", "period": 30, "label": "Example Wallet:alice"}
    assert [c.id for c in await service.list_credentials(ALICE)] == [view.id]
    # The enrolment is single use.
    with pytest.raises(errors.ChallengeNotFound):
        await complete(code_at(secret, clock.now()))
    assert len(events.of_type("credential_enrolled")) == 1


async def test_enrolment_budget_stops_guessing(service, clock):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    right = code_at(start.data["secret"], clock.now())
    for _ in range(4):
        with pytest.raises(errors.VerificationFailed):
            await service.complete_enrollment(
                ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": other_code(right)})
            )
    with pytest.raises(errors.AttemptsExhausted):
        await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": other_code(right)})
        )
    with pytest.raises(errors.AttemptsExhausted):
        await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": right}))
    assert await service.list_credentials(ALICE) == []


async def test_enrolment_expires(service, clock):
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    clock.advance(start.expires_at - clock.now() + 1)
    with pytest.raises(errors.ChallengeExpired):
        await service.complete_enrollment(
            ALICE,
            start.enrollment_id,
            EnrollmentCompletion(response={"code": code_at(start.data["secret"], clock.now())}),
        )


async def test_the_enrolment_code_cannot_be_replayed_for_step_up(flows, clock):
    start = await flows.service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    code = code_at(start.data["secret"], clock.now())
    await flows.service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": code}))
    with pytest.raises(errors.ReplayDetected):
        await flows.verify(ALICE, code=code)
    clock.advance(30)
    assert (await flows.verify(ALICE, code=code_at(start.data["secret"], clock.now()))).method == "totp"


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"digits": 9}, "params.digits"),
        ({"digits": "6"}, "params.digits"),
        ({"algorithm": "MD5"}, "params.algorithm"),
        ({"period": 5}, "params.period"),
        ({"period": 30.5}, "params.period"),
        ({"alias": ""}, "params.alias"),
        ({"accountName": 7}, "params.accountName"),
        ({"digit": 8}, "params.digit"),
    ],
)
async def test_bad_enrolment_parameters_are_named(service, params, path):
    with pytest.raises(errors.ValidationError) as info:
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp", params=params))
    assert info.value.code == "validation_error"
    assert [e["path"] for e in info.value.errors] == [path]


async def test_second_device_needs_a_link_token(flows):
    await flows.enrol(ALICE, alias="Phone")
    with pytest.raises(errors.StepUpRequired):
        await flows.service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    token = await flows.token_for(ALICE, "credential:link")
    second = await flows.enrol(ALICE, token=token, alias="Tablet")
    assert sorted(c.alias or "" for c in await flows.service.list_credentials(ALICE)) == ["Phone", "Tablet"]
    assert second.alias == "Tablet"


# --- verification ----------------------------------------------------------------------------


async def test_window_edges(flows, clock):
    await flows.enrol(ALICE)
    clock.advance(300)
    secret = flows.app.entries[0].key.secret
    now = clock.now()
    for offset in (-30, 0, 30):
        issued = await flows.verify(ALICE, code=code_at(secret, now + offset))
        assert issued.method == "totp" and issued.scopes == ("wallet:export",)
    for offset in (-60, 60):
        with pytest.raises(errors.VerificationFailed) as info:
            await flows.verify(ALICE, code=code_at(secret, now + offset))
        assert info.value.code == "verification_failed"


async def test_drift_steps_zero_accepts_only_the_current_step(make_service, flows_for, app, clock):
    flows = flows_for(await make_service(plugins={"totp": {"drift_steps": 0}}))
    await flows.enrol(ALICE)
    clock.advance(300)
    secret = app.entries[0].key.secret
    for offset in (-30, 30):
        with pytest.raises(errors.VerificationFailed):
            await flows.verify(ALICE, code=code_at(secret, clock.now() + offset))
    assert (await flows.verify(ALICE, code=code_at(secret, clock.now()))).method == "totp"


async def test_replay_of_an_accepted_code_is_refused(flows, clock, events):
    await flows.enrol(ALICE)
    clock.advance(300)
    code = flows.app.code()
    await flows.verify(ALICE, code=code)
    with pytest.raises(errors.ReplayDetected) as info:
        await flows.verify(ALICE, code=code)
    assert info.value.code == "replay_detected"
    # Still inside the drift window one step later: still refused.
    clock.advance(30)
    with pytest.raises(errors.ReplayDetected):
        await flows.verify(ALICE, code=code)
    # The next code works.
    assert (await flows.verify(ALICE)).method == "totp"
    assert events.of_type("verification_failed")[-1].reason == "replay_detected"


async def test_replay_is_refused_across_server_instances_sharing_a_store(
    make_service, flows_for, new_pm, clock, store, app
):
    first = flows_for(await make_service(pm_=new_pm(), store_=store))
    second = flows_for(await make_service(pm_=new_pm(), store_=store))
    assert first.service is not second.service and first.service.store is second.service.store
    await first.enrol(ALICE)
    clock.advance(300)
    code = app.code()
    assert (await first.verify(ALICE, code=code)).method == "totp"
    with pytest.raises(errors.ReplayDetected):
        await second.verify(ALICE, code=code)


async def test_concurrent_submissions_of_one_code_grant_once(make_service, flows_for, app, clock):
    flows = flows_for(await make_service(limits={"max_attempts": 50, "lockout_failures": 100}))
    await flows.enrol(ALICE)
    clock.advance(300)
    code = app.code()
    results = await asyncio.gather(*(flows.verify(ALICE, code=code) for _ in range(20)), return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    assert len(granted) == 1
    assert all(isinstance(r, errors.ReplayDetected) for r in results if isinstance(r, BaseException))


async def test_a_wrong_code_counts_an_attempt(flows, clock, events):
    device = await flows.enrol(ALICE)
    clock.advance(300)
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.verify(ALICE, code=other_code(flows.app.code()))
    assert info.value.details["attemptsRemaining"] == 4
    failure = events.of_type("verification_failed")[-1]
    assert (failure.method, failure.credential_id, failure.user_id) == ("totp", device.id, "alice")
    with pytest.raises(errors.VerificationFailed) as again:
        await flows.verify(ALICE, code=other_code(flows.app.code()))
    assert again.value.details["attemptsRemaining"] == 3


async def test_malformed_codes_are_invalid_responses_and_count(flows, clock):
    await flows.enrol(ALICE)
    for bad in ("12345", "1234567", "12a456", "", 123456, None):
        response: dict[str, Any] = {} if bad is None else {"code": bad}
        with pytest.raises(errors.InvalidResponse) as info:
            await flows.service.verify(
                ALICE, VerifyRequest(method="totp", response=response, requested_scopes=("wallet:export",))
            )
        assert info.value.code == "invalid_response"
        assert info.value.details["field"] == "response.code"
        assert "response.code" in info.value.message
        if bad == "":
            break  # the fifth malformed answer used up the budget
    with pytest.raises(errors.AttemptsExhausted):
        await flows.verify(ALICE)


async def test_spaces_inside_a_code_are_ignored(flows, clock):
    await flows.enrol(ALICE)
    clock.advance(60)
    code = flows.app.code()
    assert (await flows.verify(ALICE, code=f" {code[:3]} {code[3:]} ")).method == "totp"


async def test_brute_force_stops_at_the_budget_then_the_user_is_locked_out(flows, clock, events):
    await flows.enrol(ALICE)
    clock.advance(300)
    for attempt in range(1, 6):
        with pytest.raises((errors.VerificationFailed, errors.AttemptsExhausted)) as info:
            await flows.verify(ALICE, code=f"{attempt:06d}" if attempt != int(flows.app.code()) else "999999")
    assert info.value.code == "attempts_exhausted"
    # The right code is refused too while the budget is spent.
    with pytest.raises(errors.AttemptsExhausted):
        await flows.verify(ALICE)
    # A new window gives a new budget; five more failures make ten and lock the user out.
    clock.advance(601)
    for _ in range(5):
        with pytest.raises((errors.VerificationFailed, errors.AttemptsExhausted)):
            await flows.verify(ALICE, code=other_code(flows.app.code()))
    with pytest.raises(errors.LockedOut) as locked:
        await flows.verify(ALICE)
    assert locked.value.code == "locked_out"
    assert events.of_type("locked_out")
    # After the lockout window the right code works again.
    clock.advance(901)
    assert (await flows.verify(ALICE)).method == "totp"


async def test_deleted_device_no_longer_verifies(flows, clock):
    phone = await flows.enrol(ALICE, alias="Phone")
    tablet = await flows.enrol(ALICE, token=await flows.token_for(ALICE, "credential:link"), alias="Tablet")
    clock.advance(120)
    phone_code = flows.app.code({"credentialId": phone.id})
    unlink = await flows.token_for(ALICE, "credential:unlink", credential_id=tablet.id)
    await flows.service.delete_credential(ALICE, phone.id, unlink)
    with pytest.raises(errors.CredentialNotFound):
        await flows.verify(ALICE, code=phone_code, credential_id=phone.id)
    with pytest.raises(errors.VerificationFailed):
        await flows.verify(ALICE, code=phone_code)  # the default is now the tablet
    clock.advance(60)
    assert (await flows.verify(ALICE, credential_id=tablet.id)).method == "totp"
    await flows.service.delete_credential(
        ALICE, tablet.id, await flows.token_for(ALICE, "credential:unlink", credential_id=tablet.id)
    )
    clock.advance(60)
    with pytest.raises(errors.NoEligibleCredential):
        await flows.verify(ALICE, code=flows.app.code({"credentialId": tablet.id}))


async def test_default_device_selection(flows, clock):
    phone = await flows.enrol(ALICE, alias="Phone")
    clock.advance(1)
    tablet = await flows.enrol(ALICE, token=await flows.token_for(ALICE, "credential:link"), alias="Tablet")
    check = await flows.service.check(ALICE, "wallet:export")
    assert check.route is Route.MFA and check.default_credential_id == tablet.id
    clock.advance(120)
    # No credentialId: the most recently enrolled device.
    with pytest.raises(errors.VerificationFailed):
        await flows.verify(ALICE, code=flows.app.code({"credentialId": phone.id}))
    assert (await flows.verify(ALICE, code=flows.app.code({"credentialId": tablet.id}))).method == "totp"
    # A named device is used whatever the default.
    clock.advance(30)
    assert (await flows.verify(ALICE, credential_id=phone.id)).method == "totp"
    # The user makes the phone the default.
    clock.advance(30)
    update = await flows.token_for(ALICE, "credential:update", credential_id=tablet.id)
    view = await flows.service.update_credential(ALICE, phone.id, CredentialUpdate(is_default=True), update)
    assert view.is_default
    assert (await flows.service.check(ALICE, "wallet:export")).default_credential_id == phone.id
    clock.advance(60)
    with pytest.raises(errors.VerificationFailed):
        await flows.verify(ALICE, code=flows.app.code({"credentialId": tablet.id}))
    assert (await flows.verify(ALICE, code=flows.app.code({"credentialId": phone.id}))).method == "totp"


async def test_the_same_step_is_accepted_once_per_device_not_once_per_user(flows, clock):
    phone = await flows.enrol(ALICE, alias="Phone")
    tablet = await flows.enrol(ALICE, token=await flows.token_for(ALICE, "credential:link"), alias="Tablet")
    clock.advance(120)
    await flows.verify(ALICE, credential_id=phone.id)
    await flows.verify(ALICE, credential_id=tablet.id)


async def test_another_users_device_cannot_be_named(flows, clock):
    await flows.enrol(ALICE)
    bob_device = await flows.enrol(BOB)
    clock.advance(60)
    with pytest.raises(errors.CredentialNotFound):
        await flows.verify(ALICE, code=flows.app.code({"credentialId": bob_device.id}), credential_id=bob_device.id)


async def test_per_device_digits_algorithm_and_period(flows, clock):
    device = await flows.enrol(ALICE, digits=8, algorithm="sha512", period=60)
    assert device.details == {"digits": 8, "algorithm": "SHA512", "period": 60, "label": "Example Wallet:alice"}
    key = flows.app.entries[0].key
    assert (key.digits, key.algorithm, key.period) == (8, "SHA512", 60)
    assert len(decode_secret(key.secret)) == 64
    clock.advance(120)
    code = flows.app.code()
    assert len(code) == 8
    with pytest.raises(errors.InvalidResponse):
        await flows.verify(ALICE, code=code[:6])
    # A SHA-1 code of the same secret is not this device's code.
    with pytest.raises(errors.VerificationFailed):
        await flows.verify(ALICE, code=code_at(key.secret, clock.now(), digits=8, period=60))
    # The 60 s period: the previous minute's code is within one step of drift, two minutes ago is not.
    with pytest.raises(errors.VerificationFailed):
        await flows.verify(ALICE, code=key.code_at(clock.now() - 120))
    assert (await flows.verify(ALICE, code=key.code_at(clock.now() - 60))).method == "totp"
    # The current code after it (a device accepts its codes in order only: RFC 6238 section 5.2).
    assert (await flows.verify(ALICE, code=code)).method == "totp"


async def test_configured_defaults_apply_to_new_devices(make_service, flows_for, app, clock):
    flows = flows_for(
        await make_service(plugins={"totp": {"issuer": "Acme", "digits": 7, "algorithm": "SHA256", "period": 45}})
    )
    start = await flows.service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    query = parse_qs(urlparse(start.data["otpauthUri"]).query)
    assert query == {
        "secret": [start.data["secret"]],
        "issuer": ["Acme"],
        "algorithm": ["SHA256"],
        "digits": ["7"],
        "period": ["45"],
    }
    device = await flows.enrol(ALICE, accountName="alice@example.com")
    assert device.details["label"] == "Acme:alice@example.com"
    assert len(flows.app.code()) == 7


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"digits": 9}, "plugins.totp.digits"),
        ({"algorithm": "MD5"}, "plugins.totp.algorithm"),
        ({"period": 600}, "plugins.totp.period"),
        ({"drift_steps": 3}, "plugins.totp.drift_steps"),
        ({"issuer": "a:b"}, "plugins.totp.issuer"),
        ({"window": 1}, "plugins.totp.window"),
    ],
)
async def test_bad_configuration_is_refused_naming_the_key(make_service, section, key):
    with pytest.raises(errors.ConfigError) as info:
        await make_service(plugins={"totp": section})
    assert key in str(info.value)


async def test_begin_names_the_device_and_its_digits(flows, clock):
    device = await flows.enrol(ALICE, alias="Phone", digits=8)
    start = await flows.service.begin(ALICE, ChallengeRequest(method="totp", requested_scopes=("wallet:export",)))
    assert start.credential_id == device.id
    assert start.data == {"credentialId": device.id, "digits": 8, "period": 30, "label": "Example Wallet:alice"}
    clock.advance(30)
    issued = await flows.service.verify(
        ALICE,
        VerifyRequest(method="totp", challenge_id=start.challenge_id, response={"code": flows.app.code(start.data)}),
    )
    assert issued.scopes == ("wallet:export",)


async def test_no_device_means_no_eligible_credential(service):
    with pytest.raises(errors.NoEligibleCredential):
        await service.verify(
            ALICE, VerifyRequest(method="totp", response={"code": "123456"}, requested_scopes=("wallet:export",))
        )


# --- secrets at rest ---------------------------------------------------------------------------


def _raw_values(store: MemoryStore) -> list[str]:
    return list(store.held_values().values())


async def test_secret_is_sealed_at_rest_with_a_configured_key(flows, store, clock):
    start = await flows.service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    secret = start.data["secret"]
    key_bytes = decode_secret(secret)
    forms = {secret, secret.lower(), key_bytes.hex(), base64.b64encode(key_bytes).decode(),
             base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")}

    def leaked() -> list[str]:
        return [form for form in forms for value in _raw_values(store) if form in value]

    assert leaked() == []  # the pending enrolment holds it sealed too
    view = await flows.service.complete_enrollment(
        ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": code_at(secret, clock.now())})
    )
    assert leaked() == []
    stored = await flows.service.credentials.get("alice", view.id)
    assert stored is not None and stored.data["secret"].startswith("aesgcm:")
    assert flows.service.keys.unseal(SEAL_PURPOSE, stored.data["secret"]).decode() == secret
    assert "secret" not in view.details and secret not in repr(view)


async def test_without_a_secret_key_the_secret_is_stored_unencrypted_and_the_server_warns(
    make_service, store, clock, caplog
):
    caplog.set_level(logging.WARNING, logger="stepup")
    service = await make_service(secret_key=None)
    assert "UNENCRYPTED" in caplog.text
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    view = await service.complete_enrollment(
        ALICE,
        start.enrollment_id,
        EnrollmentCompletion(response={"code": code_at(start.data["secret"], clock.now())}),
    )
    stored = await service.credentials.get("alice", view.id)
    assert stored is not None and stored.data["secret"].startswith("plain:")


async def test_a_tampered_sealed_secret_fails_closed(flows, clock, events):
    view = await flows.enrol(ALICE)
    stored = await flows.service.credentials.get("alice", view.id)
    assert stored is not None
    sealed = stored.data["secret"]
    stored.data["secret"] = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    await flows.service.credentials.save(stored)
    clock.advance(60)
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.verify(ALICE)
    assert info.value.code == "verifier_error"  # a secret that does not unseal is a fault, counted as a failure
    assert not events.of_type("grant_issued")
    assert events.of_type("verification_failed")[-1].credential_id == view.id


# --- conformance vectors through the service ---------------------------------------------------


RFC6238_FILE = "totp_rfc6238_appendix_b.json"


@pytest.mark.parametrize(
    "case", vector_cases(RFC6238_FILE, lambda data: data["cases"], ids=lambda c: f"{c['mode']}-{c['time']}")
)
async def test_rfc6238_vectors_verify_through_the_service(make_service, clock, case):
    """A device enrolled with the RFC seed: its 8-digit codes grant at the RFC's times."""
    clock.current = float(case["time"])
    service = await make_service()
    seed = load_vectors(RFC6238_FILE)["keys"][case["mode"]]["base32_derived"].rstrip("=")
    device = Credential(
        id="cred_rfc",
        user_id="rfc",
        method="totp",
        format=CredentialFormat.TOTP,
        factor=Factor.MFA,
        created_at=0.0,
        data={
            "secret": service.keys.seal(SEAL_PURPOSE, seed.encode()),
            "digits": 8,
            "algorithm": case["mode"],
            "period": 30,
            "label": "RFC 6238",
        },
    )
    await service.credentials.save(device)
    user = Principal("rfc", "s")

    def request(code: str) -> VerifyRequest:
        return VerifyRequest(method="totp", response={"code": code}, requested_scopes=("wallet:export",))

    with pytest.raises(errors.VerificationFailed):
        await service.verify(user, request(other_code(case["totp"])))
    issued = await service.verify(user, request(case["totp"]))
    assert issued.method == "totp"
    with pytest.raises(errors.ReplayDetected):
        await service.verify(user, request(case["totp"]))


async def test_authenticator_app_reads_only_what_the_policy_allows(clock):
    app = AuthenticatorApp(clock=ManualClock(clock.now()))
    with pytest.raises(ValueError):
        app.add("otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example")
    with pytest.raises(LookupError):
        app.code()


# --- store operations per verification ------------------------------------------------------


async def test_a_verification_costs_at_most_four_writes_and_no_read_before_a_write(make_service, flows_for, app, clock):
    from stepup_core.testing.stores import RecordingStore

    recording = RecordingStore(MemoryStore(clock=clock))
    service = await make_service(store_=recording)
    flows_ = flows_for(service)
    await flows_.enrol(ALICE)
    clock.advance(30)
    for _ in range(3):  # the first verification and later ones alike
        recording.clear()
        issued = await flows_.verify(ALICE)
        assert issued.elevated_access_token
        operations = recording.operations
        names = [op.name for op in operations]
        assert recording.write_count <= 4, names
        # One reservation for the attempt budget and the lockout, one settlement for the rest.
        assert names.count("reserve") == 1 and names.count("settle") == 1, names
        assert "incr" not in names, names
        # A key read by one operation and written by another is written only by compare-and-set
        # of what was read: the device's high-water mark, the method's own replay guard. The
        # core's counters, challenge, grant and last use are never read first.
        read_alone = {key for op in operations if not op.writes for key in op.reads}
        written_blind = {key for op in operations if op.name != "compare_and_set" for key in op.writes}
        assert not read_alone & written_blind, names
        assert names.count("get") <= 1 and names.count("compare_and_set") <= 1, names
        clock.advance(30)
    credentials = await service.list_credentials(ALICE)
    assert credentials[0].last_used_at == clock.now() - 30  # the last use is recorded with the grant


async def test_a_wrong_code_keeps_its_places_and_an_outage_gives_them_back(
    make_service, flows_for, app, clock, monkeypatch
):
    from stepup_core.store.base import make_key
    from stepup_core.testing.stores import RecordingStore

    recording = RecordingStore(MemoryStore(clock=clock))
    service = await make_service(store_=recording)
    flows_ = flows_for(service)
    view = await flows_.enrol(ALICE)
    clock.advance(30)
    with pytest.raises(errors.VerificationFailed):
        await flows_.verify(ALICE, code=other_code(app.code()))
    failures = make_key("failures", ALICE.user_id)
    budget = make_key("attempts", ALICE.user_id, "totp", view.id)
    assert await recording.get(failures) == "1" and await recording.get(budget) == "1"

    async def outage(*args: Any, **kwargs: Any) -> Any:
        raise errors.DeliveryFailed("the method's provider is down")

    monkeypatch.setattr(service.verifiers["totp"], "verify", outage)
    recording.clear()
    with pytest.raises(errors.DeliveryFailed):
        await flows_.verify(ALICE)
    assert [op.name for op in recording.operations].count("settle") == 1
    assert await recording.get(failures) == "1" and await recording.get(budget) == "1"

