"""A wallet step-up bound to transaction details: the EIP-4361 message states them and carries
their hash as a resource; a signature made for other details is refused (real EIP-191 signatures
by eth-account)."""

from __future__ import annotations

from typing import Any

import pytest
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import is_statement, parse_message
from stepup_wallet.verifier import statement_text

from stepup_core import errors, hookimpl
from stepup_core.models import ChallengeRequest, ChallengeStart, Principal, VerifyRequest
from stepup_core.service import StepUpService
from stepup_core.transaction import hash_uri, transaction_hash

ALICE = Principal("alice", "alice-session")
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd"}
OTHER = {"amount": "120.00", "currency": "EUR", "payee": "Mallory Ltd"}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"scopes": {"payments:send": {"committing_method_required": True}}}


async def _begin(service: StepUpService, details: Any) -> ChallengeStart:
    return await service.begin(
        ALICE, ChallengeRequest(method="wallet", requested_scopes=("payments:send",), transaction=details)
    )


async def _submit(service: StepUpService, challenge: ChallengeStart, message: str, signature: str) -> Any:
    return await service.verify(
        ALICE,
        VerifyRequest(method="wallet", challenge_id=challenge.challenge_id,
                      response={"message": message, "signature": signature}),
    )


async def test_the_message_states_the_details_and_carries_their_hash(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    start = await _begin(service, PAYMENT)
    message = parse_message(start.data["message"])
    assert message.statement == (
        "Approve amount 120.00, currency EUR, payee ACME Ltd. Confirm your identity to allow: payments:send"
    )
    assert message.resources == ("urn:stepup:scope:payments:send", hash_uri(transaction_hash(PAYMENT)))
    issued = await _submit(service, start, start.data["message"], await signer.sign_message(start.data["message"]))
    assert issued.transaction_hash == transaction_hash(PAYMENT) and issued.single_use
    assert {m.name: m.commits_transaction for m in service.methods()} == {"wallet": True}


async def test_a_signature_made_for_other_details_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    start = await _begin(service, PAYMENT)
    other = await _begin(service, OTHER)
    # The other challenge's message, properly signed, answered to this challenge.
    other_message = other.data["message"]
    with pytest.raises(errors.VerificationFailed) as caught:
        await _submit(service, start, other_message, await signer.sign_message(other_message))
    assert caught.value.details["reason"] == "message_mismatch"
    # This challenge's message, with the other details' hash put in and signed.
    forged = start.data["message"].replace(
        hash_uri(transaction_hash(PAYMENT)), hash_uri(transaction_hash(OTHER))
    )
    assert forged != start.data["message"]
    with pytest.raises(errors.VerificationFailed):
        await _submit(service, start, forged, await signer.sign_message(forged))
    # A signature over the other message, presented with this one.
    with pytest.raises(errors.VerificationFailed) as caught:
        await _submit(service, start, start.data["message"], await signer.sign_message(other_message))
    assert caught.value.details["reason"] == "wrong_signer"
    # This challenge's own signature still passes, for its own details only.
    issued = await _submit(service, start, start.data["message"], await signer.sign_message(start.data["message"]))
    with pytest.raises(errors.TransactionMismatch):
        await service.require_scope(ALICE, "payments:send", issued.elevated_access_token, OTHER)
    assert await service.require_scope(ALICE, "payments:send", issued.elevated_access_token, PAYMENT) is not None


async def test_a_message_that_does_not_name_the_bound_details_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    """Defence in depth: the signed message must name the hash the core bound the challenge to,
    even if the two records ever disagreed."""
    await flows.link(ALICE, signer)
    start = await _begin(service, PAYMENT)
    record = await service.challenges.load(ALICE, start.challenge_id, None)
    record.transaction = service.gate.bind(("payments:send",), OTHER)
    await service.challenges.save(record)
    with pytest.raises(errors.VerificationFailed) as caught:
        await _submit(service, start, start.data["message"], await signer.sign_message(start.data["message"]))
    assert caught.value.details["reason"] == "transaction_mismatch"


class Summary:
    @hookimpl
    def stepup_transaction_summary(self, scopes: tuple[str, ...], transaction: dict[str, Any]) -> str:
        return f"Approve {transaction['amount']} \u20ac to {transaction['payee']} \u201cRent\u201d 100%"


async def test_the_statement_spells_the_summary_in_the_characters_eip_4361_allows(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    service.pm.register(Summary(), name="summary")
    try:
        start = await _begin(service, {**PAYMENT, "payee": "M\u00fcller GmbH"})
    finally:
        service.pm.unregister(name="summary")
    statement = parse_message(start.data["message"]).statement
    assert statement == (
        "Approve 120.00 EUR to Muller GmbH ?Rent? 100 percent. Confirm your identity to allow: payments:send"
    )
    assert statement_text("\u4e2d\u6587 \u00e9t\u00e9") == "?? ete" and is_statement(statement)
