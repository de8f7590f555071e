"""The wallet method through StepUpService: linking, stepping up, and every way to break it."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import pytest
from stepup_wallet.client import LocalKeySigner
from stepup_wallet.eip4361 import parse_message

from stepup_core import errors
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import (
    Challenge,
    ChallengePurpose,
    ChallengeRequest,
    CredentialFormat,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    Interaction,
    Principal,
    VerifyRequest,
)
from stepup_core.plugins import StepUpPluginManager
from stepup_core.service import StepUpService
from stepup_core.verifier import Attempt

ALICE = Principal("alice", "alice-session")
BOB = Principal("bob", "bob-session")


async def signed(signer: LocalKeySigner, message: str) -> dict[str, str]:
    return {"message": message, "signature": await signer.sign_message(message)}


# --- the method ---------------------------------------------------------------------------------


async def test_method_is_described(service: StepUpService) -> None:
    (info,) = [m for m in service.methods() if m.name == "wallet"]
    assert info.factor is Factor.REAUTH
    assert info.formats == (CredentialFormat.BLOCKCHAIN,)
    assert info.interaction is Interaction.MESSAGE
    assert info.requires_challenge and not info.fallback
    assert service.verifiers["wallet"].challenge_ttl <= 300


# --- linking --------------------------------------------------------------------------------------


async def test_link_a_wallet_then_step_up_with_it(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    start = await service.begin_enrollment(
        ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
    )
    link = parse_message(start.data["message"])
    assert link.statement == "Link this wallet to your account"
    assert link.address == signer.address and link.request_id == start.enrollment_id
    assert link.domain == "app.example.com" and link.uri == "https://app.example.com/account"
    assert start.data["address"] == signer.address and start.data["chainId"] == 1
    view = await service.complete_enrollment(
        ALICE,
        start.enrollment_id,
        EnrollmentCompletion(response={"signature": await signer.sign_message(start.data["message"])}),
    )
    assert view.method == "wallet" and view.format is CredentialFormat.BLOCKCHAIN
    assert view.type == "eip155:1" and view.factor is Factor.REAUTH
    assert view.alias == f"{signer.address[:6]}\u2026{signer.address[-4:]}"
    assert signer.address not in repr(view), "the full address stays on the server"

    check = await service.check(ALICE, "wallet:export")
    assert check.is_required and check.default_credential_id == view.id and check.methods == ("wallet",)
    issued = await flows.step_up(ALICE, signer)
    assert issued.method == "wallet" and issued.scopes == ("wallet:export",) and issued.single_use
    assert not (await service.check(ALICE, "wallet:export", issued.elevated_access_token)).is_required


async def test_link_address_in_lowercase_is_stored_checksummed(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    lower = LocalKeySigner.generate()
    start = await service.begin_enrollment(
        ALICE, EnrollmentRequest(method="wallet", params={"address": lower.address.lower()})
    )
    assert start.data["address"] == lower.address
    assert parse_message(start.data["message"]).address == lower.address


async def test_link_with_a_chain_id(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    view = await flows.link(ALICE, signer, chain_id=137)
    assert view.type == "eip155:137"
    challenge = await flows.begin(ALICE)
    assert parse_message(challenge.data["message"]).chain_id == 137


async def test_link_by_another_key_is_refused(
    service: StepUpService, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    start = await service.begin_enrollment(
        ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
    )
    with pytest.raises(errors.VerificationFailed, match="not by the wallet"):
        await service.complete_enrollment(
            ALICE,
            start.enrollment_id,
            EnrollmentCompletion(response={"signature": await other_signer.sign_message(start.data["message"])}),
        )
    assert await service.list_credentials(ALICE) == []


async def test_link_with_a_changed_message_is_refused(service: StepUpService, signer: LocalKeySigner) -> None:
    start = await service.begin_enrollment(
        ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
    )
    changed = start.data["message"].replace("Link this wallet", "Link that wallet")
    with pytest.raises(errors.VerificationFailed) as info:
        await service.complete_enrollment(
            ALICE, start.enrollment_id, EnrollmentCompletion(response=await signed(signer, changed))
        )
    assert info.value.details["reason"] == "message_mismatch"


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({}, "params.address"),
        ({"address": 7}, "params.address"),
        ({"address": "0x1234"}, "params.address"),
        ({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}, "params.address"),  # bad checksum
        ({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "chainId": 0}, "params.chainId"),
        ({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "chainId": "1"}, "params.chainId"),
        ({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "chainId": True}, "params.chainId"),
    ],
)
async def test_link_parameters_are_validated(service: StepUpService, params: dict[str, Any], path: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        await service.begin_enrollment(ALICE, EnrollmentRequest(method="wallet", params=params))
    assert [e["path"] for e in info.value.errors] == [path]


async def test_a_wallet_is_linked_once(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    await flows.link(ALICE, signer)
    token = (await flows.step_up(ALICE, signer, ("credential:link",))).elevated_access_token
    with pytest.raises(errors.EnrollmentFailed, match="already linked"):
        await service.begin_enrollment(
            ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address.lower()}), token
        )


async def test_a_second_wallet_needs_a_link_token(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    with pytest.raises(errors.StepUpRequired):
        await flows.link(ALICE, other_signer)
    token = (await flows.step_up(ALICE, signer, ("credential:link",))).elevated_access_token
    second = await flows.link(ALICE, other_signer, token=token)
    assert second.id in {c.id for c in await service.list_credentials(ALICE)}


async def test_link_message_expires_within_five_minutes(
    pm: StepUpPluginManager, clock: ManualClock, signer: LocalKeySigner
) -> None:
    """The enrolment lives 15 minutes here; its link message still dies after five."""
    config = config_from_mapping(
        {
            "store": "memory:",
            "secret_key": secrets.token_hex(32),
            "limits": {"challenge_ttl": 900.0},
            "plugins": {"wallet": {"domain": "app.example.com", "uri": "https://app.example.com"}},
        }
    )
    service = await StepUpService.create(config, pm=pm, clock=clock)
    try:
        start = await service.begin_enrollment(
            ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
        )
        assert start.expires_at - clock.now() == 900
        response = await signed(signer, start.data["message"])
        clock.advance(301)
        with pytest.raises(errors.ChallengeExpired, match="expired"):
            await service.complete_enrollment(ALICE, start.enrollment_id, EnrollmentCompletion(response=response))
        assert await service.list_credentials(ALICE) == []
    finally:
        await service.close()


# --- the challenge ----------------------------------------------------------------------------------


async def test_a_challenge_needs_scopes(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    await flows.link(ALICE, signer)
    with pytest.raises(errors.ValidationError) as info:
        await service.begin(ALICE, ChallengeRequest(method="wallet"))
    assert info.value.errors[0]["path"] == "requestedScopes"


async def test_no_wallet_no_challenge(service: StepUpService) -> None:
    with pytest.raises(errors.NoEligibleCredential):
        await service.begin(ALICE, ChallengeRequest(method="wallet", requested_scopes=("wallet:export",)))


async def test_domain_and_uri_default_to_the_public_url(
    pm: StepUpPluginManager, clock: ManualClock, signer: LocalKeySigner
) -> None:
    config = config_from_mapping(
        {
            "store": "memory:",
            "secret_key": secrets.token_hex(32),
            "server": {"public_url": "https://id.example.org:8443"},
        }
    )
    service = await StepUpService.create(config, pm=pm, clock=clock)
    try:
        start = await service.begin_enrollment(
            ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
        )
        message = parse_message(start.data["message"])
        assert (message.domain, message.uri) == ("id.example.org:8443", "https://id.example.org:8443")
    finally:
        await service.close()


async def test_without_domain_or_public_url_the_error_says_what_to_set(
    pm: StepUpPluginManager, clock: ManualClock, signer: LocalKeySigner
) -> None:
    config = config_from_mapping({"store": "memory:", "secret_key": secrets.token_hex(32)})
    service = await StepUpService.create(config, pm=pm, clock=clock)
    try:
        with pytest.raises(errors.ConfigError, match=r"\[plugins.wallet\] domain and uri"):
            await service.begin_enrollment(
                ALICE, EnrollmentRequest(method="wallet", params={"address": signer.address})
            )
    finally:
        await service.close()


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"domain": "https://app.example.com"}, "domain"),
        ({"domain": "app example"}, "domain"),
        ({"uri": "not a uri"}, "uri"),
        ({"chain_id": 0}, "chain_id"),
        ({"statement_prefix": "Sign\nhere"}, "statement_prefix"),
        ({"statement_prefix": "Confirm \u2192"}, "statement_prefix"),
        ({"message_ttl": 600}, "message_ttl"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_configuration_fails_at_start(
    pm: StepUpPluginManager, clock: ManualClock, table: dict[str, Any], complaint: str
) -> None:
    config = config_from_mapping(
        {"store": "memory:", "secret_key": secrets.token_hex(32), "plugins": {"wallet": table}}
    )
    with pytest.raises(errors.ConfigError, match=complaint):
        await StepUpService.create(config, pm=pm, clock=clock)


@pytest.mark.parametrize(
    "wallet_config",
    [
        {
            "domain": "app.example.com",
            "uri": "https://app.example.com",
            "statement_prefix": "Approve with your wallet",
            "message_ttl": 120,
        }
    ],
)
async def test_statement_prefix_and_message_ttl(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE, ("wallet:sign",))
    message = parse_message(challenge.data["message"])
    assert message.statement == "Approve with your wallet: wallet:sign"
    assert challenge.expires_at - service.clock.now() == 120
    assert message.expiration_time == challenge.data["expirationTime"]


# --- refusals -----------------------------------------------------------------------------------------


async def test_tampered_message_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner, app: Any
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE, ("wallet:sign",))
    tampered = challenge.data["message"].replace("wallet:sign", "wallet:export")
    # Signed as tampered: the wallet agreed to something else than what was issued.
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.submit(ALICE, challenge, await signed(signer, tampered))
    assert info.value.details["reason"] == "message_mismatch"
    # The issued text with a signature over the tampered text: recovers another address.
    response = {"message": challenge.data["message"], "signature": await signer.sign_message(tampered)}
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.submit(ALICE, challenge, response)
    assert info.value.details["reason"] == "wrong_signer"
    assert not [e for e in app.events if e.type == "grant_issued"]
    assert [e.reason for e in app.events if e.type == "verification_failed"] == [
        "verification_failed",
        "verification_failed",
    ]


async def test_trailing_newline_or_crlf_is_a_different_message(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    for variant in (challenge.data["message"] + "\n", challenge.data["message"].replace("\n", "\r\n")):
        with pytest.raises(errors.VerificationFailed):
            await flows.submit(ALICE, challenge, await signed(signer, variant))


async def test_wrong_key_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    with pytest.raises(errors.VerificationFailed, match="not by the wallet") as info:
        await flows.submit(ALICE, challenge, await signed(other_signer, challenge.data["message"]))
    assert info.value.details["attemptsRemaining"] == 4
    # The right key still works on the same challenge (within the attempt budget).
    issued = await flows.submit(ALICE, challenge, await signed(signer, challenge.data["message"]))
    assert issued.method == "wallet"


async def test_expired_challenge_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner, clock: ManualClock
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    response = await signed(signer, challenge.data["message"])
    clock.advance(300)
    with pytest.raises(errors.ChallengeExpired):
        await flows.submit(ALICE, challenge, response)


async def test_expired_message_is_refused_even_if_the_challenge_lives(
    service: StepUpService, signer: LocalKeySigner, flows: Any, clock: ManualClock
) -> None:
    """The verifier checks the message's own Expiration Time against the clock."""
    credential = await flows.link(ALICE, signer)
    verifier = service.verifiers["wallet"]
    candidates = tuple(c for c in await service.credentials.list_for_user(ALICE.user_id) if c.id == credential.id)
    challenge = Challenge(
        id="chl_long-lived",
        method="wallet",
        purpose=ChallengePurpose.STEP_UP,
        user_id=ALICE.user_id,
        session_id=ALICE.session_id,
        created_at=clock.now(),
        expires_at=clock.now() + 3600,
        requested_scopes=("wallet:export",),
    )
    begun = await verifier.begin(service.ctx, Attempt(ALICE, None, candidates, {}, challenge, ("wallet:export",)))
    challenge.state.update(begun.state)  # what the core keeps with the challenge
    data = begun.data
    assert parse_message(data["message"]).expiration_time == "2027-01-15T08:05:00.000Z"
    response = await signed(signer, data["message"])
    clock.advance(300)
    with pytest.raises(errors.ChallengeExpired, match=re.escape("expired at 2027-01-15T08:05:00.000Z")):
        await verifier.verify(service.ctx, Attempt(ALICE, None, candidates, response, challenge, ("wallet:export",)))


async def test_replayed_response_is_refused(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    response = await signed(signer, challenge.data["message"])
    await flows.submit(ALICE, challenge, response)
    with pytest.raises(errors.ChallengeNotFound):
        await flows.submit(ALICE, challenge, response)
    # A signed message is bound to its challenge: it does not answer the next one.
    fresh = await flows.begin(ALICE)
    with pytest.raises(errors.VerificationFailed) as info:
        await flows.submit(ALICE, fresh, response)
    assert info.value.details["reason"] == "message_mismatch"


async def test_nonce_ledger_refuses_a_second_use_of_a_message(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    """Beneath the core's single-use challenges, the verifier keeps its own replay ledger."""
    credential = await flows.link(ALICE, signer)
    verifier = service.verifiers["wallet"]
    challenge = await flows.begin(ALICE)
    raw = await service.store.get(f"challenge:{challenge.challenge_id}")
    assert raw is not None
    from stepup_core.serialization import loads

    record = loads(raw, Challenge)
    candidates = tuple(await service.credentials.list_for_user(ALICE.user_id))
    attempt = Attempt(
        ALICE, None, candidates, await signed(signer, challenge.data["message"]), record, ("wallet:export",)
    )
    assert (await verifier.verify(service.ctx, attempt)).credential_id == credential.id
    with pytest.raises(errors.ReplayDetected):
        await verifier.verify(service.ctx, attempt)


async def test_challenge_of_another_user_is_not_found(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    await flows.link(BOB, other_signer)
    challenge = await flows.begin(ALICE)
    with pytest.raises(errors.ChallengeNotFound):
        await flows.submit(BOB, challenge, await signed(signer, challenge.data["message"]))


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ({}, "message"),
        ({"signature": "0x" + "00" * 65}, "message"),
        ({"message": 5, "signature": "0x" + "00" * 65}, "message"),
        ({"message": "MESSAGE"}, "signature"),
        ({"message": "MESSAGE", "signature": 5}, "signature"),
        ({"message": "MESSAGE", "signature": "0x1234"}, "signature"),
        ({"message": "MESSAGE", "signature": "0x" + "ab" * 64 + "1d"}, "signature"),
        ({"message": "MESSAGE", "signature": "0x" + "xy" * 65}, "signature"),
    ],
)
async def test_malformed_responses_name_the_field(
    service: StepUpService, flows: Any, signer: LocalKeySigner, response: dict[str, Any], field: str
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    if response.get("message") == "MESSAGE":
        response = {**response, "message": challenge.data["message"]}
    with pytest.raises(errors.InvalidResponse) as info:
        await flows.submit(ALICE, challenge, response)
    assert info.value.details["field"] == field
    assert info.value.code == "invalid_response"


async def test_verify_without_a_challenge_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    with pytest.raises(errors.ValidationError, match="challengeId"):
        await service.verify(
            ALICE,
            VerifyRequest(
                method="wallet", response={"message": "x", "signature": "0x"}, requested_scopes=("wallet:export",)
            ),
        )


# --- which wallet ---------------------------------------------------------------------------------


async def test_wallet_id_picks_the_wallet(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    first = await flows.link(ALICE, signer)
    token = (await flows.step_up(ALICE, signer, ("credential:link",))).elevated_access_token
    flows.clock.advance(1)  # linked later: not the default
    second = await flows.link(ALICE, other_signer, token=token)

    default = await flows.begin(ALICE)
    assert default.credential_id == first.id and default.data["address"] == signer.address

    named = await flows.begin(ALICE, wallet_id=second.id)
    assert named.credential_id == second.id and named.data["address"] == other_signer.address
    assert parse_message(named.data["message"]).address == other_signer.address
    with pytest.raises(errors.VerificationFailed):
        await flows.submit(ALICE, named, await signed(signer, named.data["message"]))
    issued = await flows.submit(ALICE, named, await signed(other_signer, named.data["message"]))
    assert issued.method == "wallet"
    grants = [e for e in flows.app.events if e.type == "grant_issued"]
    assert grants[-1].credential_id == second.id


async def test_wallet_id_of_another_user_is_not_found(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    bobs = await flows.link(BOB, other_signer)
    with pytest.raises(errors.CredentialNotFound):
        await flows.begin(ALICE, wallet_id=bobs.id)


async def test_application_supplied_external_wallet(service: StepUpService, flows: Any, signer: LocalKeySigner) -> None:
    flows.supply(ALICE, signer.address.lower(), id="app-wallet", type="eip155:10", sign_in=True)
    challenge = await flows.begin(ALICE)
    assert challenge.credential_id == "app-wallet"
    assert parse_message(challenge.data["message"]).chain_id == 10
    issued = await flows.submit(ALICE, challenge, await signed(signer, challenge.data["message"]))
    assert issued.method == "wallet"


# --- embedded wallets ------------------------------------------------------------------------------


EMBEDDED_MARKS = [
    {"data": {"embedded": True}},
    {"data": {"walletProvider": "embeddedWallet"}},
    {"type": "embedded"},
]


@pytest.mark.parametrize("mark", EMBEDDED_MARKS, ids=["data.embedded", "walletProvider", "type"])
async def test_embedded_wallet_alone_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner, mark: dict[str, Any]
) -> None:
    flows.supply(ALICE, signer.address, id="embedded", sign_in=True, **mark)
    with pytest.raises(errors.MethodNotAllowed, match="embedded wallet") as info:
        await flows.begin(ALICE)
    assert info.value.details["reason"] == "embedded_wallet"
    assert not [e for e in flows.app.events if e.type == "challenge_issued"]


async def test_naming_an_embedded_wallet_is_refused(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    flows.supply(ALICE, other_signer.address, id="embedded", data={"embedded": True})
    with pytest.raises(errors.MethodNotAllowed, match="embedded"):
        await flows.begin(ALICE, wallet_id="embedded")


async def test_signed_in_with_an_embedded_wallet_steps_up_with_the_external_one(
    service: StepUpService, flows: Any, signer: LocalKeySigner, other_signer: LocalKeySigner
) -> None:
    """The session's own (embedded) wallet is the default, but never the one challenged."""
    session = Principal(ALICE.user_id, "embedded-session", sign_in_credential_id="embedded")
    external = await flows.link(session, signer)
    flows.supply(ALICE, other_signer.address, id="embedded", data={"walletProvider": "embeddedWallet"}, sign_in=True)
    challenge = await flows.begin(session)
    assert challenge.credential_id == external.id and challenge.data["address"] == signer.address
    issued = await flows.submit(session, challenge, await signed(signer, challenge.data["message"]))
    assert issued.method == "wallet"


async def test_wallet_that_became_embedded_is_refused_at_verify(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    credential = flows.supply(ALICE, signer.address, id="app-wallet")
    challenge = await flows.begin(ALICE)
    credential.data["embedded"] = True
    with pytest.raises(errors.MethodNotAllowed, match="embedded"):
        await flows.submit(ALICE, challenge, await signed(signer, challenge.data["message"]))
    assert not [e for e in flows.app.events if e.type == "grant_issued"]


async def test_concurrent_submissions_of_one_signature_grant_once(
    service: StepUpService, flows: Any, signer: LocalKeySigner
) -> None:
    await flows.link(ALICE, signer)
    challenge = await flows.begin(ALICE)
    response = await signed(signer, challenge.data["message"])
    results = await asyncio.gather(
        *(flows.submit(ALICE, challenge, response) for _ in range(5)), return_exceptions=True
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 1
    assert all(isinstance(r, errors.StepUpError) for r in refused), refused
