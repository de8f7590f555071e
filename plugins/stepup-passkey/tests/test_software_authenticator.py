"""The software authenticator produces real WebAuthn encodings, and the pure verification
functions accept them exactly when they should."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from stepup_passkey.testing import (
    SOFTWARE_AAGUID,
    CredentialExcluded,
    NoMatchingCredential,
    SoftwareAuthenticator,
    UnsupportedAlgorithms,
)
from stepup_passkey.verification import (
    SignCountRegression,
    b64url_decode,
    b64url_encode,
    check_sign_count,
    verify_authentication,
    verify_registration,
)

from stepup_core.errors import InvalidResponse, VerificationFailed

RP_ID = "stepup.test"
ORIGIN = "https://app.stepup.test"
CHALLENGE = bytes(range(32))
USER_HANDLE = b"\x01" * 32


def creation_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "rp": {"id": RP_ID, "name": "Stepup Test"},
        "user": {"id": b64url_encode(USER_HANDLE), "name": "alice", "displayName": "Alice"},
        "challenge": b64url_encode(CHALLENGE),
        "pubKeyCredParams": [{"type": "public-key", "alg": a} for a in (-7, -8, -257)],
        "timeout": 60000,
        "authenticatorSelection": {"residentKey": "preferred", "userVerification": "required"},
        "attestation": "none",
    }
    options.update(overrides)
    return options


def request_options(credential_ids: list[bytes], challenge: bytes = CHALLENGE) -> dict[str, Any]:
    return {
        "challenge": b64url_encode(challenge),
        "rpId": RP_ID,
        "timeout": 60000,
        "userVerification": "required",
        "allowCredentials": [{"type": "public-key", "id": b64url_encode(i)} for i in credential_ids],
    }


def register(authenticator: SoftwareAuthenticator, **kwargs: Any) -> Any:
    registration = authenticator.create(creation_options())
    return registration, verify_registration(
        registration, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
        require_user_verification=True, **kwargs,
    )


@pytest.mark.parametrize(("name", "alg", "kty"), [("ES256", -7, 2), ("EdDSA", -8, 1), ("RS256", -257, 3)])
def test_registration_encoding(name: str, alg: int, kty: int) -> None:
    from fido2 import cbor
    from fido2.webauthn import AttestationObject

    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=(name,))
    registration, registered = register(authenticator)

    client_data = json.loads(b64url_decode(registration["response"]["clientDataJSON"]))
    assert client_data == {"type": "webauthn.create", "challenge": b64url_encode(CHALLENGE), "origin": ORIGIN,
                           "crossOrigin": False}
    obj = AttestationObject(b64url_decode(registration["response"]["attestationObject"]))
    assert obj.fmt == "none" and obj.att_stmt == {}
    assert obj.auth_data.rp_id_hash == hashlib.sha256(RP_ID.encode()).digest()
    assert obj.auth_data.is_user_present() and obj.auth_data.is_user_verified() and obj.auth_data.is_attested()
    assert obj.auth_data.counter == 0
    attested = obj.auth_data.credential_data
    assert attested is not None and attested.aaguid == SOFTWARE_AAGUID.bytes
    cose = cbor.decode(b64url_decode(registered.public_key))
    assert cose[1] == kty and cose[3] == alg
    if name == "EdDSA":
        assert cose[-1] == 6  # crv Ed25519

    assert registered.credential_id == registration["rawId"] == registration["id"]
    assert registered.algorithm == alg
    assert registered.aaguid == str(SOFTWARE_AAGUID)
    assert registered.attestation_format == "none"
    assert registered.transports == ("internal",)
    assert registered.user_verified and not registered.backup_eligible


def test_packed_self_attestation_is_signed_by_the_new_key() -> None:
    from fido2.webauthn import AttestationObject

    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("ES256",), attestation="packed")
    registration, registered = register(authenticator)
    assert registered.attestation_format == "packed"
    obj = AttestationObject(b64url_decode(registration["response"]["attestationObject"]))
    assert obj.att_stmt["alg"] == -7 and "x5c" not in obj.att_stmt
    client_hash = hashlib.sha256(b64url_decode(registration["response"]["clientDataJSON"])).digest()
    public = authenticator.credentials[0].private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(obj.att_stmt["sig"], bytes(obj.auth_data) + client_hash, ec.ECDSA(hashes.SHA256()))


def test_packed_attestation_with_a_broken_signature_is_refused() -> None:
    from fido2 import cbor

    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("ES256",), attestation="packed")
    registration = authenticator.create(creation_options())
    decoded = cbor.decode(b64url_decode(registration["response"]["attestationObject"]))
    sig = bytearray(decoded["attStmt"]["sig"])
    sig[-1] ^= 1
    decoded["attStmt"]["sig"] = bytes(sig)
    registration["response"]["attestationObject"] = b64url_encode(cbor.encode(decoded))
    with pytest.raises(VerificationFailed):
        verify_registration(registration, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=ORIGIN,
                            require_user_verification=True)


@pytest.mark.parametrize("name", ["ES256", "EdDSA", "RS256"])
def test_assertions_verify_and_count(name: str) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=(name,))
    _, registered = register(authenticator)
    key = b64url_decode(registered.public_key)
    stored = registered.sign_count
    for expected in (1, 2, 3):
        challenge = bytes([expected]) * 32
        assertion = authenticator.get(request_options([b64url_decode(registered.credential_id)], challenge))
        data = json.loads(b64url_decode(assertion["response"]["clientDataJSON"]))
        assert data["type"] == "webauthn.get" and data["origin"] == ORIGIN
        assert b64url_decode(assertion["response"]["userHandle"]) == USER_HANDLE
        proven = verify_authentication(assertion, expected_challenge=challenge, rp_id=RP_ID, origins=[ORIGIN],
                                       public_key=key, stored_sign_count=stored)
        assert proven.new_sign_count == expected and proven.user_verified
        assert proven.credential_id == registered.credential_id
        stored = proven.new_sign_count
    # An old assertion after newer ones: its counter is behind.
    old = authenticator.clone()
    old.credentials[0].sign_count = 1
    with pytest.raises(SignCountRegression):
        verify_authentication(old.get(request_options([])), expected_challenge=CHALLENGE, rp_id=RP_ID,
                              origins=[ORIGIN], public_key=key, stored_sign_count=stored)


@pytest.mark.parametrize(("stored", "received", "refused"), [
    (0, 0, False),  # no counter on this authenticator
    (0, 1, False),
    (5, 6, False),
    (5, 5, True),  # replay or clone
    (5, 4, True),
    (5, 0, True),  # a counting authenticator that suddenly reports 0
])
def test_sign_count_rule(stored: int, received: int, refused: bool) -> None:
    if refused:
        with pytest.raises(SignCountRegression) as caught:
            check_sign_count(stored, received)
        assert caught.value.stored == stored and caught.value.received == received
        assert caught.value.details == {"storedSignCount": stored, "receivedSignCount": received}
    else:
        check_sign_count(stored, received)


def test_counterless_authenticator_reports_zero() -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, counter=False)
    _, registered = register(authenticator)
    for _ in range(2):
        proven = verify_authentication(
            authenticator.get(request_options([])), expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
            public_key=b64url_decode(registered.public_key), stored_sign_count=0,
        )
        assert proven.new_sign_count == 0


def test_user_verification_flag_follows_the_authenticator() -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, user_verification=False)
    registration = authenticator.create(creation_options())
    with pytest.raises(VerificationFailed, match="User verification is required"):
        verify_registration(registration, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
                            require_user_verification=True)
    registered = verify_registration(registration, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
                                     require_user_verification=False)
    assert registered.user_verified is False
    assertion = authenticator.get(request_options([]))
    key = b64url_decode(registered.public_key)
    with pytest.raises(VerificationFailed, match="User verification is required"):
        verify_authentication(assertion, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
                              public_key=key, stored_sign_count=0)
    assert not verify_authentication(assertion, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
                                     public_key=key, stored_sign_count=0,
                                     require_user_verification=False).user_verified


def test_backup_flags() -> None:
    _, registered = register(SoftwareAuthenticator(origin=ORIGIN, backup_eligible=True, backed_up=True))
    assert registered.backup_eligible and registered.backed_up


def test_authenticator_refusals() -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    registration = authenticator.create(creation_options())
    held = b64url_decode(registration["rawId"])
    with pytest.raises(CredentialExcluded):
        authenticator.create(creation_options(excludeCredentials=[{"type": "public-key", "id": registration["id"]}]))
    with pytest.raises(NoMatchingCredential):
        authenticator.get(request_options([b"\x09" * 16]))
    with pytest.raises(NoMatchingCredential):  # real authenticators scope passkeys to their RP ID
        authenticator.get(dict(request_options([held]), rpId="other.test"))
    with pytest.raises(UnsupportedAlgorithms):
        authenticator.create(creation_options(pubKeyCredParams=[{"type": "public-key", "alg": -7}]))
    with pytest.raises(ValueError, match="unsupported algorithms"):
        SoftwareAuthenticator(algorithms=("ES384",))


def test_default_origin_follows_the_rp_id() -> None:
    authenticator = SoftwareAuthenticator()
    registration = authenticator.create(creation_options())
    assert json.loads(b64url_decode(registration["response"]["clientDataJSON"]))["origin"] == "https://stepup.test"


@pytest.mark.parametrize(("credential", "field"), [
    (None, "credential"),
    ({"rawId": "AA", "type": "public-key", "response": {}}, "credential.id"),
    ({"id": "AA", "rawId": "A A", "type": "public-key", "response": {}}, "credential.rawId"),
    ({"id": "AA", "rawId": "", "type": "public-key", "response": {}}, "credential.rawId"),
    ({"id": "AA", "rawId": "AA", "type": "public-key", "response": []}, "credential.response"),
    ({"id": "AA", "rawId": "AA", "type": "public-key",
      "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA", "userHandle": 5}},
     "credential.response.userHandle"),
])
def test_shape_errors_name_the_field(credential: Any, field: str) -> None:
    with pytest.raises(InvalidResponse) as refused:
        verify_authentication(credential, expected_challenge=CHALLENGE, rp_id=RP_ID, origins=[ORIGIN],
                              public_key=b"", stored_sign_count=0)
    assert refused.value.details["field"] == field


def test_base64url_accepts_padding_and_standard_alphabet_but_not_junk() -> None:
    assert b64url_decode("-_8") == b64url_decode("+/8=") == b"\xfb\xff"
    for junk in ("a b", "ab\n", "a*", "a"):
        with pytest.raises(ValueError):
            b64url_decode(junk)
