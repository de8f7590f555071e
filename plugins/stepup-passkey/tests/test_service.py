"""Registration and step-up through StepUpService with the software authenticator, and every way
a response must be refused."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from stepup_passkey.testing import CredentialExcluded, SoftwareAuthenticator
from stepup_passkey.verification import b64url_decode, b64url_encode

from stepup_core import errors
from stepup_core.models import (
    ChallengeRequest,
    EnrollmentCompletion,
    EnrollmentRequest,
    Principal,
    VerifyRequest,
)
from stepup_core.service import StepUpService
from stepup_core.verifier import Attempt

ORIGIN = "https://app.stepup.test"
ALICE = Principal("alice", "s-alice")
BOB = Principal("bob", "s-bob")


def _client_data(credential: dict[str, Any]) -> dict[str, Any]:
    return json.loads(b64url_decode(credential["response"]["clientDataJSON"]))


async def _link_token(service: StepUpService, principal: Principal, authenticator: SoftwareAuthenticator,
                      step_up: Any) -> str:
    token = await step_up(principal, authenticator, "credential:link")
    return token.elevated_access_token


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithms", "cose_alg", "name"), [
    (("ES256",), -7, "ES256"),
    (("EdDSA",), -8, "EdDSA"),
    (("RS256",), -257, "RS256"),
])
async def test_register_then_step_up(
    service: StepUpService, enrol: Any, step_up: Any, algorithms: tuple[str, ...], cose_alg: int, name: str
) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=algorithms)
    view = await enrol(ALICE, authenticator, alias="Work laptop")

    assert view.method == "passkey" and view.format.value == "passkey" and view.factor.value == "mfa"
    assert view.alias == "Work laptop"
    assert view.details["algorithm"] == name
    assert view.details["transports"] == ["internal"]
    assert view.details["backupEligible"] is False
    # The wire view never shows the key material.
    assert "publicKey" not in json.dumps(view.details)
    assert authenticator.credentials[0].algorithm == cose_alg

    check = await service.check(ALICE, "wallet:export")
    assert check.is_required and check.route.value == "mfa"
    assert check.default_credential_id == view.id

    token = await step_up(ALICE, authenticator)
    assert token.method == "passkey" and token.scopes == ("wallet:export",)
    assert not (await service.check(ALICE, "wallet:export", token.elevated_access_token)).is_required
    grants = [e for e in service.pm.get_plugin("event-log").events if e.type == "grant_issued"]
    assert grants[-1].credential_id == view.id


async def test_stored_credential_holds_what_authentication_needs(service: StepUpService, enrol: Any,
                                                                 authenticator: SoftwareAuthenticator) -> None:
    view = await enrol(ALICE, authenticator)
    stored = await service.credentials.get("alice", view.id)
    assert stored is not None
    soft = authenticator.credentials[0]
    assert stored.data["credentialId"] == b64url_encode(soft.credential_id)
    assert stored.identifier == stored.data["credentialId"]
    assert b64url_decode(stored.data["publicKey"])  # COSE key
    assert stored.data["signCount"] == 0
    assert stored.data["transports"] == ["internal"]
    assert stored.data["aaguid"] == "5d6f1c2e-8b4a-4f7e-9c3d-2a1b0e9f8d7c"
    assert stored.data["backupEligible"] is False and stored.data["backedUp"] is False
    assert stored.data["userVerified"] is True
    assert stored.alias == "Passkey"  # no alias given: the default
    assert stored.type == "cross-platform"


async def test_packed_self_attestation_and_synced_passkey(
    service: StepUpService, enrol: Any, step_up: Any
) -> None:
    authenticator = SoftwareAuthenticator(
        origin=ORIGIN, attestation="packed", backup_eligible=True, backed_up=True, counter=False
    )
    view = await enrol(ALICE, authenticator)
    stored = await service.credentials.get("alice", view.id)
    assert stored is not None and stored.data["attestationFormat"] == "packed"
    assert view.details["backupEligible"] is True and view.details["backedUp"] is True
    # A passkey without a counter (0 every time) steps up again and again.
    for _ in range(3):
        await step_up(ALICE, authenticator)


async def test_alias_of_the_enrolment_request_wins(service: StepUpService,
                                                    authenticator: SoftwareAuthenticator) -> None:
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey", alias="YubiKey 5C"))
    response = {"credential": authenticator.create(start.data["publicKey"])}
    view = await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response))
    assert view.alias == "YubiKey 5C"


# --- the options --------------------------------------------------------------------------


async def test_authentication_options(service: StepUpService, enrol: Any,
                                      authenticator: SoftwareAuthenticator) -> None:
    first = await enrol(ALICE, authenticator)
    start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    options = start.data["publicKey"]
    assert start.interaction.value == "options"
    assert options["rpId"] == "stepup.test"
    assert options["userVerification"] == "required"
    assert options["timeout"] == 300_000
    assert len(b64url_decode(options["challenge"])) == 32
    stored = await service.credentials.get("alice", first.id)
    assert stored is not None
    assert options["allowCredentials"] == [
        {"id": stored.data["credentialId"], "type": "public-key", "transports": ["internal"]}
    ]
    again = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    assert again.data["publicKey"]["challenge"] != options["challenge"]


async def test_registration_options(service: StepUpService) -> None:
    start = await service.begin_enrollment(
        ALICE, EnrollmentRequest(method="passkey", params={"userName": "alice@example.test",
                                                          "displayName": "Alice"})
    )
    options = start.data["publicKey"]
    assert options["rp"] == {"id": "stepup.test", "name": "Stepup Test"}
    assert options["user"]["name"] == "alice@example.test" and options["user"]["displayName"] == "Alice"
    assert len(b64url_decode(options["user"]["id"])) == 32
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert options["timeout"] == 300_000
    assert options.get("excludeCredentials", []) == []
    assert len(b64url_decode(options["challenge"])) == 32


async def test_user_handle_is_stable_per_user_and_differs_between_users(service: StepUpService) -> None:
    def handle(start: Any) -> str:
        return str(start.data["publicKey"]["user"]["id"])

    a1 = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    a2 = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    b1 = await service.begin_enrollment(BOB, EnrollmentRequest(method="passkey"))
    assert handle(a1) == handle(a2)
    assert handle(a1) != handle(b1)
    assert a1.data["publicKey"]["challenge"] != a2.data["publicKey"]["challenge"]
    assert a1.data["publicKey"]["user"]["name"] == "alice"  # no userName given: the user id


async def test_second_registration_excludes_existing_passkeys(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    first = await enrol(ALICE, authenticator)
    with pytest.raises(errors.StepUpRequired):  # a second credential needs credential:link
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    token = await _link_token(service, ALICE, authenticator, step_up)
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"), token=token)
    stored = await service.credentials.get("alice", first.id)
    assert stored is not None
    assert [d["id"] for d in start.data["publicKey"]["excludeCredentials"]] == [stored.data["credentialId"]]
    # The authenticator holding the excluded passkey refuses, as a browser does.
    with pytest.raises(CredentialExcluded):
        authenticator.create(start.data["publicKey"])
    # Another authenticator registers a second passkey; both can step up.
    other = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    response = {"credential": other.create(start.data["publicKey"]), "alias": "Phone"}
    second = await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response))
    assert {c.id for c in await service.list_credentials(ALICE)} == {first.id, second.id}
    await step_up(ALICE, other)
    await step_up(ALICE, authenticator)


async def test_a_registered_passkey_cannot_be_registered_again(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    token = await _link_token(service, ALICE, authenticator, step_up)
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"), token=token)
    # A client ignoring excludeCredentials registers the same credential for the new challenge.
    registration = _register_with_existing_key(authenticator.clone(), start.data["publicKey"])
    with pytest.raises(errors.VerificationFailed, match="already registered to your account"):
        await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion({"credential": registration})
        )
    assert len(await service.list_credentials(ALICE)) == 1


async def test_a_passkey_of_one_account_cannot_join_another(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    """WebAuthn §7.1 step 22: a credential id belongs to one account."""
    await enrol(ALICE, authenticator)
    start = await service.begin_enrollment(BOB, EnrollmentRequest(method="passkey"))
    registration = _register_with_existing_key(authenticator.clone(), start.data["publicKey"])
    with pytest.raises(errors.VerificationFailed, match="another account"):
        await service.complete_enrollment(
            BOB, start.enrollment_id, EnrollmentCompletion({"credential": registration})
        )
    assert await service.list_credentials(BOB) == []


def _register_with_existing_key(authenticator: SoftwareAuthenticator, public_key: dict[str, Any]) -> dict[str, Any]:
    """A registration whose attested credential is one the authenticator already holds."""
    existing = authenticator.credentials[0]
    authenticator.credentials.clear()
    response = authenticator.create(public_key)
    authenticator.credentials.pop()
    # Rebuild the attestation object around the existing credential id and key.
    from fido2.cose import CoseKey
    from fido2.webauthn import AttestationObject, AttestedCredentialData, AuthenticatorData

    obj = AttestationObject(b64url_decode(response["response"]["attestationObject"]))
    attested = AttestedCredentialData.create(
        obj.auth_data.credential_data.aaguid,  # type: ignore[union-attr]
        existing.credential_id,
        CoseKey.for_alg(existing.algorithm).from_cryptography_key(existing.private_key.public_key()),
    )
    auth_data = AuthenticatorData.create(obj.auth_data.rp_id_hash, obj.auth_data.flags, 0, attested)
    rebuilt = AttestationObject.create("none", auth_data, {})
    authenticator.credentials.append(existing)
    raw_id = b64url_encode(existing.credential_id)
    response["id"] = response["rawId"] = raw_id
    response["response"]["attestationObject"] = b64url_encode(bytes(rebuilt))
    return response


# --- configuration changes what registration accepts ---------------------------------------


@pytest.mark.parametrize("passkey_settings", [
    {"rp_id": "stepup.test", "origins": [ORIGIN], "user_verification": "preferred", "attestation": "direct",
     "allow_algorithms": ["EdDSA", "ES256"], "resident_key": "required"},
])
async def test_configured_registration(service: StepUpService, enrol: Any, step_up: Any) -> None:
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    options = start.data["publicKey"]
    assert options["attestation"] == "direct"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-8, -7]
    # A key without user verification may register under "preferred" ...
    no_uv = SoftwareAuthenticator(origin=ORIGIN, user_verification=False)
    await enrol(ALICE, no_uv)
    # ... but step-up always requires user verification.
    with pytest.raises(errors.VerificationFailed, match="User verification is required"):
        await step_up(ALICE, no_uv)


async def test_registration_without_user_verification_is_refused_by_default(
    service: StepUpService, enrol: Any
) -> None:
    with pytest.raises(errors.VerificationFailed, match="User verification is required"):
        await enrol(ALICE, SoftwareAuthenticator(origin=ORIGIN, user_verification=False))
    assert await service.list_credentials(ALICE) == []


@pytest.mark.parametrize("passkey_settings", [{"rp_id": "stepup.test", "origins": [ORIGIN],
                                               "allow_algorithms": ["ES256"]}])
async def test_registration_with_a_disallowed_algorithm_is_refused(service: StepUpService) -> None:
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    # A client that ignores pubKeyCredParams and creates an Ed25519 key anyway.
    public_key = dict(start.data["publicKey"], pubKeyCredParams=[{"type": "public-key", "alg": -8}])
    registration = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",)).create(public_key)
    with pytest.raises(errors.VerificationFailed, match="public key alg"):
        await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion({"credential": registration})
        )


@pytest.mark.parametrize("ceremony", ["registration", "authentication"])
async def test_wrong_origin_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator, ceremony: str
) -> None:
    phished = SoftwareAuthenticator(origin="https://app.stepup.test.evil.example")
    if ceremony == "registration":
        with pytest.raises(errors.VerificationFailed, match="origin"):
            await enrol(ALICE, phished)
        return
    await enrol(ALICE, authenticator)
    phished.credentials = authenticator.credentials  # the same keys, used from a phishing page
    with pytest.raises(errors.VerificationFailed, match="origin"):
        await step_up(ALICE, phished)


@pytest.mark.parametrize("ceremony", ["registration", "authentication"])
async def test_wrong_rp_id_is_refused(service: StepUpService, enrol: Any, step_up: Any, ceremony: str) -> None:
    loose = SoftwareAuthenticator(origin=ORIGIN, enforce_rp_id=False)
    if ceremony == "registration":
        start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
        public_key = dict(start.data["publicKey"], rp={"id": "evil.example", "name": "Evil"})
        with pytest.raises(errors.VerificationFailed, match="RP ID"):
            await service.complete_enrollment(
                ALICE, start.enrollment_id, EnrollmentCompletion({"credential": loose.create(public_key)})
            )
        return
    await enrol(ALICE, loose)
    with pytest.raises(errors.VerificationFailed, match="RP ID"):
        await step_up(ALICE, loose, options=lambda o: o.update(rpId="evil.example"))


async def test_missing_user_verification_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    authenticator.user_verification = False
    with pytest.raises(errors.VerificationFailed, match="User verification is required"):
        await step_up(ALICE, authenticator)


async def test_tampered_signature_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)

    def flip_last_byte(credential: dict[str, Any]) -> None:
        signature = bytearray(b64url_decode(credential["response"]["signature"]))
        signature[-1] ^= 0x01
        credential["response"]["signature"] = b64url_encode(bytes(signature))

    with pytest.raises(errors.VerificationFailed, match="signature"):
        await step_up(ALICE, authenticator, tamper=flip_last_byte)


async def test_tampered_client_data_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    """Rewriting clientDataJSON (here: the origin) breaks the signature over its hash."""
    await enrol(ALICE, authenticator)

    def rewrite(credential: dict[str, Any]) -> None:
        data = _client_data(credential)
        data["crossOrigin"] = False
        data["extra"] = "x"
        credential["response"]["clientDataJSON"] = b64url_encode(json.dumps(data).encode())

    with pytest.raises(errors.VerificationFailed, match="signature"):
        await step_up(ALICE, authenticator, tamper=rewrite)


async def test_cross_origin_ceremony_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    authenticator.cross_origin = True
    with pytest.raises(errors.VerificationFailed, match="crossOrigin"):
        await step_up(ALICE, authenticator)


async def test_another_users_passkey_is_refused(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    bobs = SoftwareAuthenticator(origin=ORIGIN)
    await enrol(BOB, bobs)
    # Bob's authenticator answers alice's challenge (as a discoverable credential would).
    with pytest.raises(errors.VerificationFailed, match="not registered to your account"):
        await step_up(ALICE, bobs, options=lambda o: o.update(allowCredentials=[]))
    failures = service.pm.get_plugin("event-log").of_type("verification_failed")
    assert failures[-1].user_id == "alice"


# --- counters, replays -------------------------------------------------------------------


async def test_sign_count_regression_is_refused_and_reported(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    view = await enrol(ALICE, authenticator)
    cloned = authenticator.clone()
    await step_up(ALICE, authenticator)  # counter 1
    await step_up(ALICE, authenticator)  # counter 2
    with pytest.raises(errors.VerificationFailed, match="counter went from 2 to 1") as refused:
        await step_up(ALICE, cloned)  # the clone is still at 0 -> 1
    assert refused.value.code == "verification_failed"
    [event] = service.pm.get_plugin("event-log").of_type("passkey_sign_count_regression")
    assert event.outcome == "warning"
    assert event.user_id == "alice" and event.credential_id == view.id and event.method == "passkey"
    assert event.details == {"storedSignCount": 2, "receivedSignCount": 1}
    # The genuine authenticator keeps working; an equal counter is refused too.
    await step_up(ALICE, authenticator)  # 3
    cloned.credentials[0].sign_count = 2
    with pytest.raises(errors.VerificationFailed, match="counter went from 3 to 3"):
        await step_up(ALICE, cloned)
    assert len(service.pm.get_plugin("event-log").of_type("passkey_sign_count_regression")) == 2


async def test_counter_lives_in_the_store_not_in_the_credential(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    view = await enrol(ALICE, authenticator)
    for _ in range(3):
        await step_up(ALICE, authenticator)
    assert await service.store.get(f"passkey-count:{view.id}") == "3"


async def test_replayed_assertion_is_refused(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    credential = authenticator.get(start.data["publicKey"])
    request = VerifyRequest(method="passkey", challenge_id=start.challenge_id, response={"credential": credential},
                            requested_scopes=("wallet:export",))
    await service.verify(ALICE, request)
    # The same answer again: the challenge was used once and is gone.
    with pytest.raises((errors.ChallengeNotFound, errors.ChallengeUsed)):
        await service.verify(ALICE, request)
    # The same answer to a fresh challenge: wrong challenge (and a counter that did not move).
    fresh = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    with pytest.raises(errors.VerificationFailed, match="challenge"):
        await service.verify(ALICE, VerifyRequest(
            method="passkey", challenge_id=fresh.challenge_id, response={"credential": credential},
            requested_scopes=("wallet:export",)))


async def test_concurrent_uses_of_one_assertion_move_the_counter_once(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    """Below the core's single-use challenge: the verifier's compare-and-set on the counter lets
    exactly one of two simultaneous verifications of the same assertion through."""
    await enrol(ALICE, authenticator)
    start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    challenge = await service.challenges.load(ALICE, start.challenge_id, None)
    credential = authenticator.get(start.data["publicKey"])
    candidates = tuple(await service.credentials.list_for_user("alice"))
    verifier = service.verifiers["passkey"]

    def attempt() -> Attempt:
        return Attempt(ALICE, candidates[0], candidates, {"credential": credential}, challenge, ("wallet:export",))

    results = await asyncio.gather(
        *(verifier.verify(service.ctx, attempt()) for _ in range(4)), return_exceptions=True
    )
    passed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(passed) == 1
    assert all(isinstance(r, errors.VerificationFailed) for r in refused)
    assert {r.code for r in refused if isinstance(r, errors.StepUpError)} <= {"replay_detected", "verification_failed"}


# --- malformed responses get named errors, never a grant or a 500 ----------------------------


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.pop("credential"), "response.credential"),
    (lambda r: r.update(credential="not an object"), "response.credential"),
    (lambda r: r["credential"].update(rawId="***"), "response.credential.rawId"),
    (lambda r: r["credential"].update(id="other"), "response.credential.id"),
    (lambda r: r["credential"].update(type="password"), "response.credential.type"),
    (lambda r: r["credential"]["response"].pop("signature"), "response.credential.response.signature"),
    (lambda r: r["credential"]["response"].update(authenticatorData=7),
     "response.credential.response.authenticatorData"),
    (lambda r: r["credential"]["response"].update(clientDataJSON="e30"),
     "response.credential.response.clientDataJSON"),
    (lambda r: r["credential"]["response"].update(clientDataJSON="bm90IGpzb24"),
     "response.credential.response.clientDataJSON"),
    (lambda r: r["credential"]["response"].update(authenticatorData="AAAA"),
     "response.credential.response.authenticatorData"),
    (lambda r: r["credential"]["response"].update(signature="AAAA"), None),
])
async def test_malformed_assertions(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator, mutate: Any, field: str | None
) -> None:
    await enrol(ALICE, authenticator)
    start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    response: dict[str, Any] = {"credential": authenticator.get(start.data["publicKey"])}
    mutate(response)
    with pytest.raises(errors.VerificationFailed) as refused:
        await service.verify(ALICE, VerifyRequest(method="passkey", challenge_id=start.challenge_id,
                                                  response=response, requested_scopes=("wallet:export",)))
    if field is not None:
        assert isinstance(refused.value, errors.InvalidResponse)
        assert refused.value.details["field"] == field
        assert field in refused.value.message


@pytest.mark.parametrize("response", [
    {},
    {"credential": []},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                    "response": {"clientDataJSON": "e30", "attestationObject": "oA"}}},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                    "response": {"clientDataJSON": base64.urlsafe_b64encode(b"[1]").decode(),
                                 "attestationObject": "AAAA"}}},
])
async def test_malformed_registrations(service: StepUpService, response: dict[str, Any]) -> None:
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    with pytest.raises(errors.VerificationFailed):
        await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response))
    assert await service.list_credentials(ALICE) == []


async def test_bad_enrolment_parameters(service: StepUpService) -> None:
    with pytest.raises(errors.ValidationError, match="unknown passkey enrolment parameters"):
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey", params={"rpId": "evil"}))
    with pytest.raises(errors.ValidationError, match=r"params\.userName"):
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey", params={"userName": "x" * 65}))


async def test_bad_alias_in_completion(service: StepUpService, authenticator: SoftwareAuthenticator) -> None:
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="passkey"))
    response = {"credential": authenticator.create(start.data["publicKey"]), "alias": 5}
    with pytest.raises(errors.ValidationError, match=r"response\.alias"):
        await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response))


async def test_step_up_without_a_passkey(service: StepUpService) -> None:
    with pytest.raises(errors.NoEligibleCredential):
        await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))


async def test_expired_challenge(service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator,
                                 clock: Any) -> None:
    await enrol(ALICE, authenticator)
    start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
    assert start.expires_at == clock.now() + 300
    credential = authenticator.get(start.data["publicKey"])
    clock.advance(301)
    with pytest.raises((errors.ChallengeExpired, errors.ChallengeNotFound)):
        await service.verify(ALICE, VerifyRequest(method="passkey", challenge_id=start.challenge_id,
                                                  response={"credential": credential},
                                                  requested_scopes=("wallet:export",)))


async def test_application_supplied_passkey_without_key_material_is_not_offered(
    service: StepUpService, enrol: Any, step_up: Any, authenticator: SoftwareAuthenticator
) -> None:
    """A passkey credential the application lists (no stored key) is never offered or accepted."""
    from stepup_core.hookspecs import hookimpl
    from stepup_core.models import Credential, CredentialFormat, Factor

    class AppCredentials:
        @hookimpl
        def stepup_user_credentials(self, principal: Principal) -> list[Credential]:
            return [Credential(id="app-passkey", user_id=principal.user_id, method="", format=CredentialFormat.PASSKEY,
                               factor=Factor.MFA, created_at=0.0)]

    view = await enrol(ALICE, authenticator)
    service.pm.register(AppCredentials(), name="app-credentials")
    try:
        with pytest.raises(errors.NoEligibleCredential, match="no registered passkey"):
            await service.begin(BOB, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
        start = await service.begin(ALICE, ChallengeRequest(method="passkey", requested_scopes=("wallet:export",)))
        stored = await service.credentials.get("alice", view.id)
        assert stored is not None
        assert [c["id"] for c in start.data["publicKey"]["allowCredentials"]] == [stored.data["credentialId"]]
        await step_up(ALICE, authenticator)
    finally:
        service.pm.unregister(name="app-credentials")


async def test_counter_compare_and_set_retries_only_past_older_values(service: StepUpService) -> None:
    """When another verification moved the counter first: past a lower value ours still goes in;
    at an equal or higher value ours is a second use and is refused."""
    from stepup_passkey.verifier import PasskeyVerifier, counter_key

    key = counter_key("cred_x")
    await service.store.put(key, "1")
    await PasskeyVerifier._advance_counter(service.ctx, key, None, 3)  # saw nothing, someone wrote 1
    assert await service.store.get(key) == "3"
    with pytest.raises(errors.ReplayDetected):
        await PasskeyVerifier._advance_counter(service.ctx, key, "1", 3)
    with pytest.raises(errors.ReplayDetected):
        await PasskeyVerifier._advance_counter(service.ctx, key, "1", 2)
    assert await service.store.get(key) == "3"
