"""Issuing a grant: the elevated access token a successful verification earns.

The scope policies shape the token: single-use or time-bound, its lifetime, a JWT where every
scope asks for signed grants (:mod:`stepup_core.signing`). Its RFC 9470 ``acr`` comes from
``[acr]``, its ``amr`` from the method. A grant bound to transaction details
(:mod:`stepup_core.transaction`) records their hash and is single-use and opaque, never a JWT:
only the server can spend it once and compare the details a request carries.

Issuing also records the use on a stored credential (``last_used_at``, the method's new public
details) and audits ``grant_issued``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .authn import amr_of
from .clock import Clock
from .credentials import StoreCredentialRepository
from .models import AuditEvent, Challenge, Credential, IssuedToken, Principal, TokenBehavior, Transaction
from .scopes import ScopePolicies
from .signing import KeyRing
from .tokens import TokenStore
from .transaction import audit_details, binding_hash
from .verifier import Verifier


@attrs.define
class GrantIssuer:
    """Mints grants for verified step-ups.

    :param claims: the claims every signed grant carries (``iss``, ``aud``), read when a grant
        is signed (the server's public URL may be learnt after start).
    """

    policies: ScopePolicies
    tokens: TokenStore
    keyring: KeyRing
    credentials: StoreCredentialRepository
    clock: Clock
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
        transaction: Transaction | None = None,
    ) -> IssuedToken:
        """Mint the token for ``scopes`` (bound to ``transaction``, else to the challenge's) and
        record its use."""
        behavior, ttl = self.policies.token_shape(scopes)
        bound = binding_hash(transaction, challenge)
        issued = await self.tokens.mint(
            principal,
            scopes,
            method=verifier.name,
            ttl=ttl,
            credential_id=credential.id,
            single_use=behavior is TokenBehavior.SINGLE_USE,
            acr=self.policies.acr_of(verifier.name, scopes),
            amr=amr_of(verifier, credential.format),
            transaction_hash=bound,
            # A bound grant is single-use and checked by the server: never a JWT.
            signer=None if bound else self.keyring.signer_for(self.policies, scopes),
            claims=self.claims(),
        )
        await self._record_use(credential, public)
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

    async def _record_use(self, credential: Credential, public: dict[str, Any] | None) -> None:
        """``last_used_at``, with the method's new public details, on a stored credential."""
        if credential.external:
            return
        stored = await self.credentials.get(credential.user_id, credential.id)
        if stored is None:
            return
        changes: dict[str, Any] = {"last_used_at": self.clock.now()}
        if public is not None:
            changes["public"] = dict(public)
        await self.credentials.save(attrs.evolve(stored, **changes))
