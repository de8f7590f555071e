"""Registration and step-up over HTTP: stepup's aiohttp server on loopback, StepUpClient with this
plugin's client half and the software authenticator. Every stepup answer is checked against the
OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import stepup_passkey.plugin
from stepup_passkey.testing import SoftwareAuthenticator

from stepup_core.errors import VerificationFailed
from stepup_core.testing.stack import StepUpStack

ORIGIN = "https://app.stepup.test"


#: The application's own route, which needs a fresh ``wallet:export`` step-up.
EXPORT = {"/wallet/export": "wallet:export"}


@pytest.fixture
async def stack() -> AsyncIterator[StepUpStack]:
    config = {"plugins": {"passkey": {"rp_id": "stepup.test", "rp_name": "Stepup Test", "origins": [ORIGIN]}}}
    async with StepUpStack.start(plugins=[stepup_passkey.plugin], config=config, protected=EXPORT) as stack:
        yield stack


async def test_register_and_step_up_over_http(stack: StepUpStack) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    alice = stack.client("alice")
    methods = await alice.methods()
    assert methods["passkey"].factor.value == "mfa" and methods["passkey"].interaction.value == "options"

    view = await alice.enroll("passkey", alias="Laptop", authenticator=authenticator, user_name="alice@example.test")
    assert view.alias == "Laptop" and view.method == "passkey"
    assert [c.id for c in await alice.list_credentials()] == [view.id]

    # Without a token the application refuses with an RFC 9470 challenge.
    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.calls == []

    token = await alice.verify_passkey_mfa(authenticator, requested_scopes=["wallet:export"])
    assert token.method == "passkey" and token.single_use
    done = await alice.post("/wallet/export", scope="wallet:export")
    assert done.status == 200 and done.json() == {"path": "/wallet/export", "scope": "wallet:export", "user": "alice"}
    assert stack.calls == ["/wallet/export"]
    assert ("POST", "/stepup/verify", 200) in stack.validator.seen


async def test_unattended_client_steps_up_with_its_actor(stack: StepUpStack) -> None:
    """The prompt picks the passkey (alice's only MFA device) and the actor answers, as in
    ``stepup demo``; a 401 from the application triggers it once."""
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    alice = stack.client("alice", actors={"passkey": authenticator}, auto_step_up=True)
    await alice.enroll("passkey")
    response = await alice.post("/wallet/export", scope="wallet:export")
    assert response.status == 200
    assert authenticator.credentials[0].sign_count == 1
    # A second passkey needs credential:link, obtained with the first.
    await alice.prompt_step_up_auth("credential:link")
    second = SoftwareAuthenticator(origin=ORIGIN, algorithms=("RS256",))
    view = await alice.enroll("passkey", authenticator=second, alias="Backup key")
    assert view.alias == "Backup key"
    assert len(await alice.list_credentials()) == 2


async def test_refusals_over_http_are_problems_with_stable_codes(stack: StepUpStack) -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    alice = stack.client("alice")
    await alice.enroll("passkey", authenticator=authenticator)

    phished = SoftwareAuthenticator(origin="https://evil.example")
    phished.credentials = authenticator.credentials
    with pytest.raises(VerificationFailed, match="origin") as refused:
        await alice.verify_passkey_mfa(phished, requested_scopes=["wallet:export"])
    assert refused.value.code == "verification_failed"
    assert alice.state.error is not None

    # A malformed answer posted by hand: problem+json naming the field, never a 500.
    async with stack.http.post(f"{stack.base_url}/stepup/challenges", headers=stack.headers("alice"),
                               json={"method": "passkey", "requestedScopes": ["wallet:export"]}) as resp:
        assert resp.status == 201
        challenge = await resp.json()
    assert challenge["data"]["publicKey"]["userVerification"] == "required"
    body = {"method": "passkey", "challengeId": challenge["challengeId"], "requestedScopes": ["wallet:export"],
            "response": {"credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}}}
    async with stack.http.post(f"{stack.base_url}/stepup/verify", headers=stack.headers("alice"), json=body) as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert problem["code"] == "invalid_response"
    assert "response.credential.response.clientDataJSON" in problem["detail"]


async def test_another_users_passkey_over_http(stack: StepUpStack) -> None:
    alices = SoftwareAuthenticator(origin=ORIGIN)
    bobs = SoftwareAuthenticator(origin=ORIGIN)
    await stack.client("alice").enroll("passkey", authenticator=alices)
    await stack.client("bob").enroll("passkey", authenticator=bobs)

    class Discoverable:
        """Answers any request with bob's passkey, ignoring allowCredentials."""

        def create(self, public_key: Any) -> dict[str, Any]:
            raise AssertionError("not used")

        def get(self, public_key: Any) -> dict[str, Any]:
            return bobs.get(dict(public_key, allowCredentials=[]))

    alice = stack.client("alice")
    with pytest.raises(VerificationFailed, match="not registered to your account"):
        await alice.verify_passkey_mfa(Discoverable(), requested_scopes=["wallet:export"])
    refused = await alice.post("/wallet/export", scope="wallet:export")
    assert refused.status == 401 and stack.calls == []


async def test_a_ceremony_on_another_origin_is_refused_naming_both_origins(stack: StepUpStack) -> None:
    """The page ran at http://localhost:8080 while the server accepts only its configured origin:
    the refusal says which origin the browser reported and which ones are allowed."""
    alice = stack.client("alice")
    elsewhere = SoftwareAuthenticator(origin="http://localhost:8080")
    with pytest.raises(VerificationFailed) as refused:
        await alice.enroll("passkey", authenticator=elsewhere)
    message = refused.value.message
    assert "'http://localhost:8080'" in message and f"'{ORIGIN}'" in message
    assert "[plugins.passkey] origins" in message
    assert refused.value.details["origin"] == "http://localhost:8080"
    assert refused.value.details["allowedOrigins"] == [ORIGIN]
    assert await alice.list_credentials() == []
