"""The one converter: camelCase on the wire, one ValidationError listing every bad field."""

from __future__ import annotations

import pytest

from stepup_core.errors import ValidationError
from stepup_core.models import (
    ChallengeRequest,
    Credential,
    CredentialFormat,
    EnrollmentRequest,
    Factor,
    VerifyRequest,
)
from stepup_core.serialization import dumps, loads, structure, unstructure


def test_camel_case_round_trip():
    credential = Credential(id="c1", user_id="u", method="totp", format=CredentialFormat.TOTP, factor=Factor.MFA,
                            created_at=5.0, sign_in=True, data={"k": [1, 2]})
    wire = unstructure(credential)
    assert wire["userId"] == "u" and wire["signIn"] is True and wire["format"] == "totp"
    assert loads(dumps(credential), Credential) == credential


def test_view_hides_private_fields():
    credential = Credential(id="c1", user_id="u", method="otp", format=CredentialFormat.EMAIL, factor=Factor.REAUTH,
                            created_at=5.0, identifier="me@example.com", data={"secret": "x", "public": {"n": 1}})
    wire = unstructure(credential.view())
    assert "identifier" not in wire and "data" not in wire and wire["details"] == {"n": 1}


def test_every_bad_field_is_listed_in_one_error():
    with pytest.raises(ValidationError) as info:
        structure({"method": 7, "response": [], "requestedScopes": ["ok", 3], "bogus": True}, VerifyRequest)
    paths = {e["path"] for e in info.value.errors}
    assert paths == {"method", "response", "requestedScopes[1]", "bogus"}


@pytest.mark.parametrize("payload", [None, [], "x", 3, {"params": "x"}, {"method": None}])
def test_malformed_payloads_never_raise_key_or_type_errors(payload):
    with pytest.raises(ValidationError):
        structure(payload, ChallengeRequest)


def test_booleans_are_not_numbers_and_enums_are_checked():
    with pytest.raises(ValidationError) as info:
        structure({"id": "c", "userId": "u", "method": "m", "format": "fax", "factor": "mfa", "createdAt": True},
                  Credential)
    messages = {e["path"]: e["message"] for e in info.value.errors}
    assert "fax" in messages["format"] and "number" in messages["createdAt"]


def test_missing_required_field_is_named():
    with pytest.raises(ValidationError) as info:
        structure({}, EnrollmentRequest)
    assert info.value.errors == [{"path": "method", "message": "required field missing"}]
