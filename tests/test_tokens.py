"""The scope-token store: mint, validate, consume, revoke."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from stepup_core.clock import ManualClock
from stepup_core.models import Principal
from stepup_core.store.memory import MemoryStore
from stepup_core.tokens import TokenStore

P = Principal("u1", "s1")


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def tokens(clock):
    return TokenStore(MemoryStore(clock=clock), clock)


async def test_token_format_and_only_hash_stored(tokens):
    issued = await tokens.mint(P, ["user:update"], method="pin", ttl=600, single_use=False)
    token = issued.elevated_access_token
    assert token.startswith("sut_")
    assert len(base64.urlsafe_b64decode(token[4:] + "=")) == 32  # 256 random bits
    records = tokens.store.held_values()
    assert all(token not in value and token not in k for k, value in records.items())
    assert any(hashlib.sha256(token.encode()).hexdigest() in k for k in records)


async def test_validate_checks_scope_user_session_expiry(tokens, clock):
    token = (await tokens.mint(P, ["user:update", "user:delete"], method="pin", ttl=60, single_use=False))
    t = token.elevated_access_token
    assert await tokens.validate(t, P, "user:update") is not None
    assert await tokens.validate(t, P, "user:delete") is not None
    assert await tokens.validate(t, P, "wallet:export") is None
    assert await tokens.validate(t, Principal("u2", "s1"), "user:update") is None
    assert await tokens.validate(t, Principal("u1", "s2"), "user:update") is None
    assert await tokens.validate("sut_" + "A" * 43, P, "user:update") is None
    assert await tokens.validate("not-a-token", P, "user:update") is None
    clock.advance(61)
    assert await tokens.validate(t, P, "user:update") is None


async def test_single_use_consumed_once_under_concurrency(tokens):
    t = (await tokens.mint(P, ["wallet:export"], method="pin", ttl=300, single_use=True)).elevated_access_token
    results = await asyncio.gather(*[tokens.validate(t, P, "wallet:export") for _ in range(100)])
    assert sum(r is not None for r in results) == 1
    assert await tokens.peek(t, P, "wallet:export") is None


async def test_wrong_principal_does_not_burn_a_single_use_token(tokens):
    t = (await tokens.mint(P, ["wallet:export"], method="pin", ttl=300, single_use=True)).elevated_access_token
    assert await tokens.validate(t, Principal("attacker", "s1"), "wallet:export") is None
    assert await tokens.validate(t, P, "wallet:export") is not None


async def test_revoke_by_session_and_user_and_list(tokens):
    a = (await tokens.mint(P, ["user:update"], method="pin", ttl=600, single_use=False)).elevated_access_token
    other_session = Principal("u1", "s2")
    b = (await tokens.mint(other_session, ["user:update"], method="pin", ttl=600, single_use=False))
    assert [g.scopes for g in await tokens.list_session("u1", "s1")] == [("user:update",)]
    assert await tokens.revoke_session("u1", "s1") == 1
    assert await tokens.validate(a, P, "user:update") is None
    assert await tokens.validate(b.elevated_access_token, other_session, "user:update") is not None
    assert await tokens.revoke_user("u1") == 1
    assert await tokens.validate(b.elevated_access_token, other_session, "user:update") is None


async def test_presenting_says_why_a_token_is_refused(tokens, clock):
    from stepup_core.tokens import Refusal, token_id

    issued = await tokens.mint(P, ["user:update"], method="pin", ttl=60, single_use=False)
    t = issued.elevated_access_token
    digest = hashlib.sha256(t.encode()).hexdigest()
    ok = await tokens.present(t, P, "user:update", consume=True)
    assert ok.grant is not None and ok.refusal is None and ok.token_id == token_id(digest)
    assert len(ok.token_id) == 16 and ok.token_id not in (digest[:16], t[4:20])
    cases = [
        (t, Principal("u2", "s1"), "user:update", Refusal.OTHER_USER),
        (t, Principal("u1", "s2"), "user:update", Refusal.OTHER_SESSION),
        (t, P, "user:delete", Refusal.SCOPE_NOT_GRANTED),
        ("sut_" + "A" * 43, P, "user:update", Refusal.UNKNOWN),
        ("sut_" + "A" * 42, P, "user:update", Refusal.MALFORMED),
        ("sut_" + "A" * 43 + "=", P, "user:update", Refusal.MALFORMED),
        ("SUT_" + t[4:], P, "user:update", Refusal.MALFORMED),
        ("sut_" + "\udcff" * 43, P, "user:update", Refusal.MALFORMED),
    ]
    for token, principal, scope, reason in cases:
        presented = await tokens.present(token, principal, scope, consume=True)
        assert (presented.grant, presented.refusal) == (None, reason), (token, principal, scope)
        assert (presented.token_id is None) == (reason == Refusal.MALFORMED)
    clock.advance(61)
    assert (await tokens.present(t, P, "user:update", consume=False)).refusal == Refusal.EXPIRED


async def test_the_losers_of_a_single_use_race_are_told_it_was_used(tokens):
    from stepup_core.tokens import Refusal

    t = (await tokens.mint(P, ["wallet:export"], method="pin", ttl=300, single_use=True)).elevated_access_token
    results = await asyncio.gather(*[tokens.present(t, P, "wallet:export", consume=True) for _ in range(20)])
    assert sum(r.grant is not None for r in results) == 1
    assert {r.refusal for r in results if r.grant is None} <= {Refusal.ALREADY_USED, Refusal.UNKNOWN}
