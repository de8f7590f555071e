"""Challenge records: ids, expiry, single use, binding to user and session, and the callback
state of redirect methods.

A record outlives its logical expiry by :data:`GRACE_SECONDS` so "expired" can be told from
"unknown"; another user's or session's record reads as unknown (no existence oracle).
"""

from __future__ import annotations

import hashlib
import secrets

from .clock import Clock
from .crypto import random_id
from .errors import ChallengeExpired, ChallengeNotFound, ChallengeUsed
from .limits import free_live_slot
from .models import Challenge, ChallengePurpose, ChallengeStatus, Interaction, Principal, Transaction
from .serialization import dumps, loads
from .store.base import GRACE_SECONDS, Store, make_key
from .verifier import Verifier


def _challenge_key(challenge_id: str) -> str:
    return make_key("challenge", challenge_id)


def _callback_key(method: str, state: str) -> str:
    return make_key("callback", method, hashlib.sha256(state.encode()).hexdigest())


class ChallengeRecords:
    """Challenges and enrolments in the store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def new(
        self,
        principal: Principal,
        verifier: Verifier,
        purpose: ChallengePurpose,
        ttl: float,
        *,
        requested_scopes: tuple[str, ...] = (),
        credential_id: str | None = None,
        transaction: Transaction | None = None,
    ) -> Challenge:
        """A fresh record (not saved yet); a redirect method's gets a random callback state. A
        step-up bound to ``transaction`` keeps it: the grant and the method's proof follow it."""
        now = self.clock.now()
        return Challenge(
            id=random_id("enr" if purpose is ChallengePurpose.ENROLLMENT else "chl"),
            method=verifier.name,
            purpose=purpose,
            user_id=principal.user_id,
            session_id=principal.session_id,
            created_at=now,
            expires_at=now + ttl,
            requested_scopes=requested_scopes,
            credential_id=credential_id,
            transaction=transaction,
            callback_state=secrets.token_urlsafe(32) if verifier.interaction is Interaction.REDIRECT else None,
        )

    async def save(self, challenge: Challenge) -> None:
        ttl = max(challenge.expires_at - self.clock.now(), 0) + GRACE_SECONDS
        await self.store.put(_challenge_key(challenge.id), dumps(challenge), ttl=ttl)

    async def save_new(self, challenge: Challenge) -> None:
        """Save a new record and, for a redirect method, the way back to it from its callback."""
        await self.save(challenge)
        if challenge.callback_state:
            await self.store.put(
                _callback_key(challenge.method, challenge.callback_state),
                challenge.id,
                ttl=challenge.expires_at - self.clock.now() + GRACE_SECONDS,
            )

    async def load(self, principal: Principal | None, challenge_id: str, purpose: ChallengePurpose | None) -> Challenge:
        raw = await self.store.get(_challenge_key(challenge_id))
        if raw is None:
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge_id)
        challenge = loads(raw, Challenge)
        foreign = principal is not None and (
            challenge.user_id != principal.user_id or challenge.session_id != principal.session_id
        )
        if foreign or (purpose is not None and challenge.purpose is not purpose):
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge_id)
        return challenge

    async def load_pending(
        self, principal: Principal | None, challenge_id: str, purpose: ChallengePurpose | None, what: str
    ) -> Challenge:
        """A record still waiting for its answer, and alive."""
        challenge = await self.load(principal, challenge_id, purpose)
        if challenge.status is not ChallengeStatus.PENDING:
            raise ChallengeUsed(f"this {what} was already completed", challengeId=challenge.id)
        self.ensure_live(challenge)
        return challenge

    async def by_callback_state(self, method: str, state: str) -> Challenge:
        """The record a callback's ``state`` names; the state works once."""
        challenge_id = await self.store.take(_callback_key(method, state))
        if challenge_id is None:
            raise ChallengeNotFound("unknown or already used state")
        return await self.load(None, challenge_id, None)

    def ensure_live(self, challenge: Challenge) -> None:
        if challenge.expires_at <= self.clock.now():
            raise ChallengeExpired("the challenge expired; start a new one", challengeId=challenge.id)

    @staticmethod
    def key(challenge: Challenge) -> str:
        """The store key of a challenge's record (for an operation that takes it with others)."""
        return _challenge_key(challenge.id)

    async def take(self, challenge: Challenge, what: str) -> None:
        """Use the record up, atomically: of two concurrent answers only one gets here; its
        place among the user's live records is free again."""
        if await self.store.take(_challenge_key(challenge.id)) is None:
            raise ChallengeUsed(f"this {what} was already completed", challengeId=challenge.id)
        await free_live_slot(self.store, challenge)

    def budget_ttl(self, challenge: Challenge) -> float:
        """How long a record's attempt budget lives: as long as the record."""
        return max(challenge.expires_at - self.clock.now(), 1.0) + GRACE_SECONDS

    @staticmethod
    def budget_key(challenge: Challenge) -> str:
        return make_key("attempts", challenge.id)
