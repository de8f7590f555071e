"""The recorded WebAuthn responses (py_webauthn's test data and the derived must-fail cases) pass
or fail through this plugin's verification functions exactly as each case states."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from stepup_passkey.config import PasskeySettings
from stepup_passkey.verification import (
    AuthenticatedPasskey,
    RegisteredPasskey,
    SignCountRegression,
    b64url_decode,
    verify_authentication,
    verify_registration,
)

from stepup_core.errors import VerificationFailed
from stepup_core.testing.vectors import load_vectors, vector_cases

UPSTREAM = "webauthn_py_webauthn.json"
DERIVED = "webauthn_derived_negative.json"
GROUPS = ("registration_success", "registration_fail", "authentication_success", "authentication_fail")
#: py_webauthn's algorithm names (as the vectors spell them) to this plugin's configuration names.
ALGORITHM_NAMES = {"ML_DSA_44": "ML-DSA-44", "ML_DSA_65": "ML-DSA-65", "ML_DSA_87": "ML-DSA-87"}
#: Fields of `expected` / `reference_result` that describe py_webauthn's return object itself.
NOT_COMPARED = {"computed_by", "credential_type", "attestation_object_b64url"}
#: Each must-fail case is refused for its own stated reason (the refusal names it).
REFUSED_BECAUSE = {
    "reg-fail-unsupported-attestation-fmt": "unsupported attestation",
    "reg-fail-wrong-root-cert-for-packed": "certificate chain",
    "reg-fail-empty-attestation-object": "attestationobject is empty",
    "reg-fail-fido-u2f-tokenbinding-status-not-supported": "token_binding",
    "auth-fail-wrong-public-key": "signature",
    "auth-fail-uv-required-but-not-verified": "user verification is required",
    "derived-reg-wrong-challenge": "challenge",
    "derived-reg-wrong-origin": "origin",
    "derived-reg-wrong-rp-id": "rp id",
    "derived-reg-uv-required-but-absent": "user verification is required",
    "derived-auth-wrong-challenge": "challenge",
    "derived-auth-wrong-origin": "origin",
    "derived-auth-wrong-rp-id": "rp id",
    "derived-auth-sign-count-replay": "signature counter went from 78 to 78",
    "derived-auth-sign-count-regressed": "signature counter went from 100 to 78",
    "derived-auth-uv-required-but-absent": "user verification is required",
    "derived-auth-public-key-of-other-credential": "signature",
    "derived-auth-tampered-signature": "signature",
    "derived-reg-clientdata-type-get": "client data type",
}


def _cases() -> list[Any]:
    """Every case as a parameter; a missing file is one parameter whose test fails naming it."""
    upstream = vector_cases(UPSTREAM, lambda data: [case for group in GROUPS for case in data[group]])
    return upstream + vector_cases(DERIVED, lambda data: data["cases"])


def _has_ml_dsa() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa  # noqa: F401
    except ImportError:
        return False
    return True


def _run(case: dict[str, Any]) -> RegisteredPasskey | AuthenticatedPasskey:
    options = dict(case.get("options") or {})
    common: dict[str, Any] = {
        "expected_challenge": b64url_decode(case["expected_challenge_b64url"]),
        "rp_id": case["expected_rp_id"],
        "origins": case["expected_origin"],
        "require_user_verification": bool(options.pop("require_user_verification", False)),
    }
    if case["ceremony"] == "registration":
        names = [ALGORITHM_NAMES[a] for a in options.pop("supported_pub_key_algs", [])]
        algorithms = PasskeySettings(allow_algorithms=tuple(names)) if names else PasskeySettings()
        roots = case.get("trusted_root_certs_pem_by_fmt")
        at = case.get("verification_time")
        assert not options, f"unhandled options {options}"
        return verify_registration(
            case["credential"],
            allowed_algorithms=algorithms.algorithm_ids,
            trusted_roots={fmt: [pem.encode() for pem in pems] for fmt, pems in roots.items()} if roots else None,
            attestation_time=datetime.datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None,
            **common,
        )
    assert not options, f"unhandled options {options}"
    return verify_authentication(
        case["credential"],
        public_key=b64url_decode(case["credential_public_key_b64url"]),
        stored_sign_count=int(case["credential_current_sign_count"]),
        **common,
    )


def _as_reference(result: RegisteredPasskey | AuthenticatedPasskey) -> dict[str, Any]:
    """Our result in the vocabulary of the vectors' `expected` and `reference_result`."""
    device_type = "multi_device" if result.backup_eligible else "single_device"
    out: dict[str, Any] = {
        "credential_id_b64url": result.credential_id,
        "user_verified": result.user_verified,
        "credential_backed_up": result.backed_up,
        "credential_device_type": device_type,
    }
    if isinstance(result, RegisteredPasskey):
        out |= {
            "fmt": result.attestation_format,
            "aaguid": result.aaguid,
            "credential_public_key_b64url": result.public_key,
            "sign_count": result.sign_count,
        }
    else:
        out["new_sign_count"] = result.new_sign_count
    return out


@pytest.mark.parametrize("case", _cases())
def test_vector(case: dict[str, Any]) -> None:
    if case.get("scope") == "attestation-statement-only":
        pytest.skip(
            "optional: this android-safetynet case checks the attestation statement alone with the "
            "JWS freshness check off; the plugin only runs whole registrations, and as a whole "
            "registration this response is correctly refused (its SafetyNet timestamp is stale). "
            "SafetyNet is deprecated."
        )
    uses_ml_dsa = "ML_DSA" in str(case.get("options")) or case["id"].startswith("auth-ml-dsa")
    if uses_ml_dsa and not _has_ml_dsa():
        pytest.skip("optional: ML-DSA (post-quantum) needs cryptography built with ML-DSA support")

    if case["expected_result"] == "fail":
        with pytest.raises(VerificationFailed) as refused:
            _run(case)
        assert REFUSED_BECAUSE[case["id"]] in str(refused.value).lower()
        if "sign-count" in case["id"]:
            assert isinstance(refused.value, SignCountRegression)
        return

    assert case["expected_result"] == "success"
    got = _as_reference(_run(case))
    for source in ("expected", "reference_result"):
        for key, want in (case.get(source) or {}).items():
            if key in NOT_COMPARED:
                continue
            assert key in got, f"{source}.{key} is not compared"
            assert got[key] == want, f"{source}.{key}: {got[key]!r} != {want!r}"


def test_every_case_is_collected() -> None:
    """189 checks in the README; the WebAuthn share is 30 upstream and 13 derived cases."""
    upstream = load_vectors(UPSTREAM)
    derived = load_vectors(DERIVED)
    assert sum(len(upstream[g]) for g in GROUPS) == 30
    assert len(derived["cases"]) == 13
    assert len(_cases()) == 43


def test_attestation_chain_fails_outside_its_validity_when_the_clock_is_not_pinned() -> None:
    """The android-key chain only validates at its recorded instant: checked now, it must fail."""
    upstream = load_vectors(UPSTREAM)
    case = next(c for c in upstream["registration_success"] if c["id"] == "reg-android-key-pixel-8a")
    later = dict(case, verification_time="2040-01-01T00:00:00Z")
    with pytest.raises(VerificationFailed):
        _run(later)
    assert _run(case).attestation_format == "android-key"
