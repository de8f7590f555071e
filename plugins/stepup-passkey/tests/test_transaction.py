"""A passkey step-up bound to transaction details: the assertion commits to their hash, and an
assertion made for any other details is refused (with the software authenticator, which signs
what it is given like a real one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stepup_passkey.testing import SoftwareAuthenticator
from stepup_passkey.verification import b64url_decode, b64url_encode

from stepup_core import errors
from stepup_core.models import ChallengeRequest, Principal, VerifyRequest
from stepup_core.service import StepUpService
from stepup_core.transaction import hash_bytes, transaction_hash

ORIGIN = "https://app.stepup.test"
ALICE = Principal("alice", "s-alice")
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}
OTHER = {"amount": "120.00", "currency": "EUR", "payee": "Mallory Ltd"}


@pytest.fixture
def config_mapping(config_mapping: dict[str, Any]) -> dict[str, Any]:
    return {**config_mapping, "scopes": {"payments:send": {"committing_method_required": True}}}


async def _begin(service: StepUpService, details: Any) -> Any:
    return await service.begin(
        ALICE, ChallengeRequest(method="passkey", requested_scopes=("payments:send",), transaction=details)
    )


async def _verify(service: StepUpService, challenge_id: str, credential: dict[str, Any]) -> Any:
    return await service.verify(
        ALICE, VerifyRequest(method="passkey", challenge_id=challenge_id, response={"credential": credential})
    )


def _signed_challenge(credential: dict[str, Any]) -> bytes:
    client_data = json.loads(b64url_decode(credential["response"]["clientDataJSON"]))
    return b64url_decode(client_data["challenge"])


async def test_the_assertion_signs_the_nonce_and_the_details_hash(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    start = await _begin(service, PAYMENT)
    assert start.transaction is not None and start.transaction.hash == transaction_hash(PAYMENT)
    credential = authenticator.get(start.data["publicKey"])
    signed = _signed_challenge(credential)
    # What the authenticator signed (clientDataJSON) carries the details' hash after the nonce.
    assert len(signed) == 64 and signed[32:] == hash_bytes(transaction_hash(PAYMENT))
    token = await _verify(service, start.challenge_id, credential)
    assert token.transaction_hash == transaction_hash(PAYMENT) and token.single_use
    assert {m.name: m.commits_transaction for m in service.methods()} == {"passkey": True}


async def test_an_assertion_made_for_other_details_is_refused(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    start = await _begin(service, PAYMENT)
    # A page that shows one payment and has the authenticator sign another's challenge: the nonce
    # is this challenge's, the hash is of the other details.
    public_key = dict(start.data["publicKey"])
    nonce = b64url_decode(public_key["challenge"])[:32]
    public_key["challenge"] = b64url_encode(nonce + hash_bytes(transaction_hash(OTHER)))
    forged = authenticator.get(public_key)
    with pytest.raises(errors.VerificationFailed):
        await _verify(service, start.challenge_id, forged)

    # An assertion made for a challenge with other details, answered to this one.
    other = await _begin(service, OTHER)
    for_other = authenticator.get(other.data["publicKey"])
    with pytest.raises(errors.VerificationFailed):
        await _verify(service, start.challenge_id, for_other)
    # ...and the nonce alone, as an unbound step-up would sign it.
    public_key = dict(start.data["publicKey"])
    public_key["challenge"] = b64url_encode(nonce)
    with pytest.raises(errors.VerificationFailed):
        await _verify(service, start.challenge_id, authenticator.get(public_key))

    # The challenge's own assertion still verifies (the refusals used attempts, not the challenge).
    token = await _verify(service, start.challenge_id, authenticator.get(start.data["publicKey"]))
    assert token.transaction_hash == transaction_hash(PAYMENT)


async def test_a_bound_grant_from_a_passkey_opens_only_its_payment(
    service: StepUpService, enrol: Any, authenticator: SoftwareAuthenticator
) -> None:
    await enrol(ALICE, authenticator)
    start = await _begin(service, PAYMENT)
    token = await _verify(service, start.challenge_id, authenticator.get(start.data["publicKey"]))
    with pytest.raises(errors.TransactionMismatch):
        await service.require_scope(ALICE, "payments:send", token.elevated_access_token, OTHER)
    grant = await service.require_scope(
        ALICE, "payments:send", token.elevated_access_token, dict(reversed(list(PAYMENT.items())))
    )
    assert grant is not None and grant.transaction_hash == transaction_hash(PAYMENT)
    with pytest.raises(errors.StepUpRequired):
        await service.require_scope(ALICE, "payments:send", token.elevated_access_token, PAYMENT)
