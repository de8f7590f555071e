"""The client half: which authenticator answers, what it sends, and how failures read."""

from __future__ import annotations

from typing import Any

import pytest
from stepup_passkey.client import (
    AuthenticatorFailed,
    PasskeyAuthenticator,
    PasskeyClientMethod,
    SecurityKeyAuthenticator,
    SecurityKeyNotFound,
)
from stepup_passkey.testing import SoftwareAuthenticator
from stepup_passkey.verification import b64url_encode

from stepup_core.client import ScriptedPrompter
from stepup_core.client.method import ClientContext, ClientMethod
from stepup_core.errors import InvalidResponse

ORIGIN = "https://app.stepup.test"
CREATION = {
    "rp": {"id": "stepup.test", "name": "Stepup Test"},
    "user": {"id": b64url_encode(b"u" * 32), "name": "alice", "displayName": "Alice"},
    "challenge": b64url_encode(b"c" * 32),
    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    "authenticatorSelection": {"residentKey": "preferred", "userVerification": "required"},
    "attestation": "none",
}


def request(credential_ids: list[str]) -> dict[str, Any]:
    return {
        "challengeId": "chl_1",
        "method": "passkey",
        "data": {"publicKey": {"challenge": b64url_encode(b"r" * 32), "rpId": "stepup.test",
                               "userVerification": "required",
                               "allowCredentials": [{"type": "public-key", "id": i} for i in credential_ids]}},
    }


def ctx(actor: Any = None, **options: Any) -> ClientContext:
    return ClientContext(prompter=ScriptedPrompter(), options=options, actor=actor)


def test_it_is_a_client_method() -> None:
    method = PasskeyClientMethod()
    assert isinstance(method, ClientMethod)
    assert (method.name, method.package) == ("passkey", "stepup-passkey")
    actor = method.unattended()
    assert isinstance(actor, SoftwareAuthenticator) and isinstance(actor, PasskeyAuthenticator)


async def test_enrolment_and_answer_with_the_authenticator_option() -> None:
    method = PasskeyClientMethod()
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    params = await method.enrollment_params(ctx(authenticator=authenticator, user_name="alice@example.test",
                                                display_name="Alice"))
    assert params == {"userName": "alice@example.test", "displayName": "Alice"}
    assert await method.enrollment_params(ctx()) == {}

    response = await method.answer_enrollment({"data": {"publicKey": CREATION}},
                                              ctx(authenticator=authenticator, alias="Laptop"))
    assert response["alias"] == "Laptop"
    credential = response["credential"]
    assert credential["type"] == "public-key" and "attestationObject" in credential["response"]

    answer = await method.answer(request([credential["id"]]), ctx(authenticator=authenticator))
    assert answer.response is not None and not answer.completed_elsewhere
    assert answer.response["credential"]["id"] == credential["id"]
    assert "signature" in answer.response["credential"]["response"]


async def test_the_actor_answers_when_no_authenticator_is_given() -> None:
    method = PasskeyClientMethod()
    actor = SoftwareAuthenticator(origin=ORIGIN)
    created = await method.answer_enrollment({"data": {"publicKey": CREATION}}, ctx(actor=actor))
    answer = await method.answer(request([created["credential"]["id"]]), ctx(actor=actor))
    assert answer.response is not None
    assert actor.credentials[0].sign_count == 1
    # The option wins over the actor.
    other = SoftwareAuthenticator(origin=ORIGIN)
    with pytest.raises(AuthenticatorFailed, match=r"no passkey for stepup\.test"):
        await method.answer(request([created["credential"]["id"]]), ctx(actor=actor, authenticator=other))


async def test_no_security_key_found() -> None:
    """No authenticator given, no actor: the USB security key path; none is connected here."""
    method = PasskeyClientMethod()
    with pytest.raises(SecurityKeyNotFound, match="no security key found") as missing:
        await method.answer(request(["AAAA"]), ctx())
    assert missing.value.code == "security_key_not_found"
    with pytest.raises(SecurityKeyNotFound):
        await method.answer_enrollment({"data": {"publicKey": CREATION}}, ctx())
    with pytest.raises(SecurityKeyNotFound):
        SecurityKeyAuthenticator(origin=ORIGIN, devices=list).get(request([])["data"]["publicKey"])


async def test_authenticator_failures_become_stepup_errors() -> None:
    method = PasskeyClientMethod()
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    with pytest.raises(AuthenticatorFailed, match="did not complete the ceremony") as failed:
        await method.answer_enrollment({"data": {"publicKey": CREATION}}, ctx(authenticator=authenticator))
    assert failed.value.code == "authenticator_failed"


async def test_options_missing_from_the_server_answer() -> None:
    method = PasskeyClientMethod()
    with pytest.raises(InvalidResponse, match=r"data\.publicKey"):
        await method.answer({"challengeId": "chl_1", "data": {}}, ctx(authenticator=SoftwareAuthenticator()))
    with pytest.raises(InvalidResponse, match=r"data\.publicKey"):
        await method.answer_enrollment({"data": None}, ctx(authenticator=SoftwareAuthenticator()))


async def test_a_wrong_authenticator_object_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="create"):
        await PasskeyClientMethod().answer(request([]), ctx(authenticator=object()))
