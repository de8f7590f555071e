"""Minting a grant after a successful verification, in one store step with everything else
the success settles (see :meth:`Grants.issue`).

A grant bound to transaction details (:mod:`stepup_core.transaction`) records their hash and is
single-use and opaque whatever the scope's policy, never a JWT: only the server can spend it
once and compare the details a request carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .authn import amr_of
from .challenges import ChallengeRecords
from .clock import Clock
from .credentials import StoreCredentialRepository
from .errors import ChallengeUsed
from .limits import free_live_slot
from .models import AuditEvent, Challenge, Credential, IssuedToken, Principal, TokenBehavior, Transaction
from .scopes import ScopePolicies
from .signing import KeyRing
from .store.base import Store
from .tokens import TokenStore
from .transaction import audit_details, binding_hash
from .verifier import Verifier


@attrs.define
class Grants:
    store: Store
    clock: Clock
    policies: ScopePolicies
    tokens: TokenStore
    credentials: StoreCredentialRepository
    challenges: ChallengeRecords
    keyring: KeyRing
    #: The claims a signed grant carries besides its own (``iss``, ``aud``), asked for at each
    #: grant: the issuer may be learnt from the first request.
    claims: Callable[[], Mapping[str, Any]]
    emit: Callable[[AuditEvent], Awaitable[None]]
    event: Callable[..., AuditEvent]

    async def issue(
        self,
        principal: Principal,
        verifier: Verifier,
        credential: Credential,
        scopes: Sequence[str],
        challenge: Challenge | None,
        public: dict[str, Any] | None = None,
        *,
        release: Sequence[str] = (),
        used_message: str = "this challenge was already completed",
        transaction: Transaction | None = None,
    ) -> IssuedToken:
        """Mint the token and record the use, in one store step (``settle``) that also uses up
        ``challenge`` (when given: ChallengeUsed if another request used it first) and gives back
        the attempt's places in ``release``. The use is a record of its own beside a stored
        credential (its ``last_used_at``, written blind); the method's new public details, when it
        reports any, rewrite the credential in the same step. The grant is bound to
        ``transaction``, else to the challenge's."""
        behavior, ttl = self.policies.token_shape(scopes)
        bound = binding_hash(transaction, challenge)
        # A bound grant is single-use and checked by the server: never a JWT.
        signer = None if bound else self.keyring.signer_for(self.policies, scopes)
        issued, grant_write = await self.tokens.prepare(
            principal,
            scopes,
            method=verifier.name,
            ttl=ttl,
            single_use=behavior is TokenBehavior.SINGLE_USE,
            credential_id=credential.id,
            acr=self.policies.acr_of(verifier.name, scopes),
            amr=amr_of(verifier, credential.format),
            signer=signer,
            claims=self.claims() if signer is not None else None,
            transaction_hash=bound,
        )
        writes = [grant_write]
        if not credential.external:
            writes.append(self.credentials.last_used_write(credential, self.clock.now()))
            if public is not None:
                stored = await self.credentials.get(credential.user_id, credential.id)
                if stored is not None:
                    writes.append(self.credentials.write(attrs.evolve(stored, public=dict(public))))
        settled = await self.store.settle(
            take=self.challenges.key(challenge) if challenge is not None else None, release=release, writes=writes
        )
        if not settled:  # another answer used the challenge first
            if release:  # this one was no wrong answer: its places go back all the same
                await self.store.settle(release=release)
            assert challenge is not None
            raise ChallengeUsed(used_message, challengeId=challenge.id)
        if challenge is not None:
            await free_live_slot(self.store, challenge)
        await self.emit(
            self.event(
                "grant_issued",
                "success",
                principal,
                method=verifier.name,
                credential_id=credential.id,
                challenge_id=challenge.id if challenge else None,
                scopes=issued.scopes,
                details={
                    "singleUse": issued.single_use,
                    "expiresAt": issued.expires_at,
                    "tokenId": TokenStore.id_of(issued.elevated_access_token),
                    **audit_details(issued.transaction_hash),
                },
            )
        )
        return issued
