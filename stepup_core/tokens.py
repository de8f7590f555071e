"""The scope-token store: mint, validate, consume, revoke elevated access tokens.

A token is ``sut_`` + 256 random bits; the store keeps only its SHA-256 with the grant's user,
session, scopes, method, issue time, expiry and single-use flag. Validation is a hash lookup; a
single-use token is consumed with the store's atomic ``take``, so of many concurrent
presentations exactly one succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .clock import Clock
from .crypto import TOKEN_PREFIX, new_elevated_token, token_hash
from .models import Grant, IssuedToken, Principal
from .serialization import dumps, loads
from .store.base import GRACE_SECONDS, Store, Write, make_key

#: Parsed grants kept by their stored JSON, so a hot token is not re-parsed on every request. The
#: store is still read every time: revocation, expiry and single use are decided there.
_PARSED_GRANTS_MAX = 1024


def _grant_key(digest: str) -> str:
    # make_key("grant", digest) without the escaping pass: a hex digest has nothing to escape.
    return "grant:" + digest


def _session_index(user_id: str, session_id: str) -> str:
    return make_key("grants-session", user_id, session_id)


def _user_index(user_id: str) -> str:
    return make_key("grants-user", user_id)


@attrs.define
class TokenStore:
    store: Store
    clock: Clock
    _parsed: dict[str, Grant] = attrs.field(factory=dict, init=False, repr=False)

    def _parse(self, raw: str) -> Grant:
        grant = self._parsed.get(raw)
        if grant is None:
            grant = loads(raw, Grant)
            if len(self._parsed) >= _PARSED_GRANTS_MAX:
                self._parsed.clear()
            self._parsed[raw] = grant
        return grant

    async def mint(
        self,
        principal: Principal,
        scopes: Iterable[str],
        *,
        method: str,
        ttl: float,
        single_use: bool,
        credential_id: str | None = None,
    ) -> IssuedToken:
        issued, write = self.prepare(
            principal, scopes, method=method, ttl=ttl, single_use=single_use, credential_id=credential_id
        )
        await self.store.put(write.key, write.value, ttl=write.ttl, indexes=write.indexes)
        return issued

    def prepare(
        self,
        principal: Principal,
        scopes: Iterable[str],
        *,
        method: str,
        ttl: float,
        single_use: bool,
        credential_id: str | None = None,
    ) -> tuple[IssuedToken, Write]:
        """A new token and the write that stores its grant, for a caller that stores it in one
        atomic step with other writes (:meth:`Store.settle`); :meth:`mint` stores it alone."""
        token = new_elevated_token()
        now = self.clock.now()
        grant = Grant(
            token_hash=token_hash(token),
            user_id=principal.user_id,
            session_id=principal.session_id,
            scopes=tuple(sorted(set(scopes))),
            method=method,
            issued_at=now,
            expires_at=now + ttl,
            single_use=single_use,
            credential_id=credential_id,
        )
        write = Write(
            _grant_key(grant.token_hash),
            dumps(grant),
            ttl=ttl + GRACE_SECONDS,
            indexes=(_session_index(grant.user_id, grant.session_id), _user_index(grant.user_id)),
        )
        issued = IssuedToken(
            elevated_access_token=token,
            scopes=grant.scopes,
            expires_at=grant.expires_at,
            single_use=single_use,
            method=method,
        )
        return issued, write

    def _matches(self, grant: Grant, principal: Principal, scope: str) -> bool:
        return (
            grant.user_id == principal.user_id
            and grant.session_id == principal.session_id
            and scope in grant.scopes
            and grant.expires_at > self.clock.now()
        )

    async def peek(self, token: str | None, principal: Principal, scope: str) -> Grant | None:
        """The grant if ``token`` is valid for this user, session and scope, without consuming it."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128 or not token.isascii():
            return None  # issued tokens are ASCII; header bytes that are not UTF-8 arrive as surrogates
        raw = await self.store.get(_grant_key(token_hash(token)))
        if raw is None:
            return None
        grant = self._parse(raw)
        return grant if self._matches(grant, principal, scope) else None

    async def validate(self, token: str | None, principal: Principal, scope: str) -> Grant | None:
        """Validate for use: a single-use token is consumed atomically (one winner)."""
        grant = await self.peek(token, principal, scope)
        if grant is None or not grant.single_use:
            return grant
        assert token is not None
        taken = await self.store.take(_grant_key(grant.token_hash))
        if taken is None:
            return None
        grant = loads(taken, Grant)
        return grant if self._matches(grant, principal, scope) else None

    async def list_session(self, user_id: str, session_id: str) -> list[Grant]:
        now = self.clock.now()
        grants = [loads(v, Grant) for v in (await self.store.list_index(_session_index(user_id, session_id))).values()]
        return sorted((g for g in grants if g.expires_at > now), key=lambda g: g.issued_at)

    async def _revoke_index(self, index: str) -> int:
        count = 0
        for key in await self.store.list_index(index):
            if await self.store.delete(key):
                count += 1
        return count

    async def revoke_session(self, user_id: str, session_id: str) -> int:
        return await self._revoke_index(_session_index(user_id, session_id))

    async def revoke_user(self, user_id: str) -> int:
        return await self._revoke_index(_user_index(user_id))
