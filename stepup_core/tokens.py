"""The scope-token store: mint, validate, consume, revoke elevated access tokens.

A token is ``sut_`` + 256 random bits, or for a scope whose policy asks for signed grants a JWT
(:mod:`stepup_core.signing`); either way the store keeps only its SHA-256 with the grant's user,
session, scopes, method, issue time, expiry and single-use flag. Validation is a hash lookup; a
single-use token is consumed with the store's atomic ``take``, so of many concurrent
presentations exactly one succeeds. A grant bound to transaction details records their hash and
is always single-use; a presentation names the hash of the details it carries (None for none)
and a grant bound otherwise is refused before anything is consumed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from .clock import Clock
from .crypto import TOKEN_PREFIX, new_elevated_token, token_hash
from .models import Grant, IssuedToken, Principal
from .serialization import dumps, loads
from .store.base import GRACE_SECONDS, Store, Write, make_key

#: Parsed grants kept by their stored JSON (and audit ids by token hash), so a hot token is not
#: re-parsed (re-hashed) on every request. The store is still read every time: revocation, expiry
#: and single use are decided there.
_PARSED_GRANTS_MAX = 1024


#: What every issued token looks like: the prefix and 256 bits in unpadded base64url, or a
#: signed grant (a compact JWT of a sane length).
TOKEN_SHAPE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}\Z")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
_MAX_JWT_LENGTH = 4096

#: Signs a grant's claims: ``await sign(claims)`` answers (the JWT, its key id).
Signer = Callable[[dict[str, Any]], Awaitable[tuple[str, str]]]
#: A further condition on a grant before it is used (the scope's acr and max_age, a live key).
GrantCheck = Callable[[Grant], Awaitable[bool]]


def shaped_like_token(token: str) -> bool:
    """An opaque ``sut_`` token or a compact JWT. Header bytes that are not UTF-8 arrive as
    surrogates and match neither."""
    if TOKEN_SHAPE.match(token):
        return True
    return token.isascii() and len(token) <= _MAX_JWT_LENGTH and _JWT_SHAPE.match(token) is not None


class Refusal:
    """Why a presented token was refused (the ``reason`` of a ``grant_refused`` event)."""

    MALFORMED = "malformed"  # not the shape of any issued token
    UNKNOWN = "unknown"  # never issued, revoked, used up (single use), or gone since it expired
    EXPIRED = "expired"
    OTHER_USER = "other_user"
    OTHER_SESSION = "other_session"
    SCOPE_NOT_GRANTED = "scope_not_granted"
    ALREADY_USED = "already_used"  # a single-use token a concurrent request consumed first
    #: Bound to other transaction details than the request carries (or to some, or to none).
    TRANSACTION_MISMATCH = "transaction_mismatch"
    #: Valid, but the authentication it stands for is not the class or age the scope's policy
    #: asks for (RFC 9470), or its signing key was withdrawn.
    INSUFFICIENT = "insufficient"


@attrs.frozen
class Presentation:
    """The outcome of presenting a token: the grant, or why it was refused."""

    grant: Grant | None
    refusal: str | None = None
    #: A non-reversible id of a well-formed token (see :func:`token_id`), None for a malformed one.
    token_id: str | None = None
    #: For ``transaction_mismatch``: the hash the refused grant is bound to (None: unbound).
    bound_to: str | None = None


def token_id(digest: str) -> str:
    """An id for audit events, from the token's stored hash: the first 16 hex digits of a
    SHA-256 of that hash. It names the same token in every event (``grant_issued``,
    ``grant_used``, ``grant_refused``) but is neither the token nor the key it is stored
    under, so it can be neither used nor looked up."""
    return hashlib.sha256(f"stepup-token-id:{digest}".encode()).hexdigest()[:16]


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
    _ids: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)

    def _parse(self, raw: str) -> Grant:
        grant = self._parsed.get(raw)
        if grant is None:
            grant = loads(raw, Grant)
            if len(self._parsed) >= _PARSED_GRANTS_MAX:
                self._parsed.clear()
            self._parsed[raw] = grant
        return grant

    def _id(self, digest: str) -> str:
        """:func:`token_id` of ``digest``, remembered for the tokens presented again and again."""
        found = self._ids.get(digest)
        if found is None:
            found = token_id(digest)
            if len(self._ids) >= _PARSED_GRANTS_MAX:
                self._ids.clear()
            self._ids[digest] = found
        return found

    async def mint(
        self,
        principal: Principal,
        scopes: Iterable[str],
        *,
        method: str,
        ttl: float,
        single_use: bool,
        credential_id: str | None = None,
        transaction_hash: str | None = None,
        acr: str | None = None,
        amr: Iterable[str] = (),
        signer: Signer | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Mint a token for ``scopes`` and store its grant (see :meth:`prepare`)."""
        issued, write = await self.prepare(
            principal,
            scopes,
            method=method,
            ttl=ttl,
            single_use=single_use,
            credential_id=credential_id,
            transaction_hash=transaction_hash,
            acr=acr,
            amr=amr,
            signer=signer,
            claims=claims,
        )
        await self.store.put(write.key, write.value, ttl=write.ttl, indexes=write.indexes)
        return issued

    async def prepare(
        self,
        principal: Principal,
        scopes: Iterable[str],
        *,
        method: str,
        ttl: float,
        single_use: bool,
        credential_id: str | None = None,
        transaction_hash: str | None = None,
        acr: str | None = None,
        amr: Iterable[str] = (),
        signer: Signer | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> tuple[IssuedToken, Write]:
        """A new token for ``scopes`` and the write that stores its grant, for a caller that
        stores it in one atomic step with other writes (:meth:`Store.settle`); :meth:`mint`
        stores it alone. With ``signer`` (time-bound grants only) the token is a JWT carrying
        ``claims`` (``iss``, ``aud``) and the grant's own: ``sub``, ``sid``, ``scope``, ``exp``,
        ``iat``, ``jti``, ``acr``, ``amr``, ``auth_time``. A grant bound to the transaction with
        ``transaction_hash`` is single-use, and so never signed."""
        single_use = single_use or transaction_hash is not None
        now = self.clock.now()
        scope_list = tuple(sorted(set(scopes)))
        amr_list = tuple(amr)
        key_id: str | None = None
        if signer is not None:
            if single_use:
                raise ValueError(
                    "a single-use grant (every transaction-bound one is) is never signed: only the server "
                    "can spend it once"
                )
            payload: dict[str, Any] = {
                **(claims or {}),
                "sub": principal.user_id,
                "sid": principal.session_id,
                "scope": " ".join(scope_list),
                "iat": int(now),
                "exp": int(now + ttl),
                "jti": secrets.token_urlsafe(16),
                "auth_time": int(now),
                "amr": list(amr_list),
            }
            if acr is not None:
                payload["acr"] = acr
            token, key_id = await signer(payload)
            expires_at = float(payload["exp"])
        else:
            token = new_elevated_token()
            expires_at = now + ttl
        grant = Grant(
            token_hash=token_hash(token),
            user_id=principal.user_id,
            session_id=principal.session_id,
            scopes=scope_list,
            method=method,
            issued_at=now,
            expires_at=expires_at,
            single_use=single_use,
            credential_id=credential_id,
            transaction_hash=transaction_hash,
            acr=acr,
            amr=amr_list,
            auth_time=now,
            key_id=key_id,
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
            single_use=grant.single_use,
            method=method,
            transaction_hash=transaction_hash,
        )
        return issued, write

    def _refusal(self, grant: Grant, principal: Principal, scope: str) -> str | None:
        if grant.user_id != principal.user_id:
            return Refusal.OTHER_USER
        if grant.session_id != principal.session_id:
            return Refusal.OTHER_SESSION
        if grant.expires_at <= self.clock.now():
            return Refusal.EXPIRED
        if scope not in grant.scopes:
            return Refusal.SCOPE_NOT_GRANTED
        return None

    @staticmethod
    def id_of(token: str) -> str | None:
        """The audit id of ``token`` (:func:`token_id`), None when it is not shaped like a token."""
        return token_id(token_hash(token)) if shaped_like_token(token) else None

    async def present(
        self,
        token: str,
        principal: Principal,
        scope: str,
        *,
        consume: bool,
        check: GrantCheck | None = None,
        transaction_hash: str | None = None,
    ) -> Presentation:
        """Present ``token`` for ``scope`` and the transaction with ``transaction_hash`` (None:
        an action that states no details): its grant if valid for this user, session, scope and
        transaction (and ``check``), else why not. With ``consume`` a single-use token is used up
        atomically (one winner of many concurrent presentations); a refused presentation never
        consumes anything: the binding and ``check`` are looked at before."""
        if not shaped_like_token(token):
            # Header bytes that are not UTF-8 arrive as surrogates: no match either.
            return Presentation(None, Refusal.MALFORMED)
        digest = token_hash(token)
        presented_id = self._id(digest)
        raw = await self.store.get(_grant_key(digest))
        if raw is None:
            return Presentation(None, Refusal.UNKNOWN, presented_id)
        grant = self._parse(raw)
        refusal = self._refusal(grant, principal, scope)
        if refusal is not None:
            return Presentation(None, refusal, presented_id)
        if grant.transaction_hash != transaction_hash:
            return Presentation(None, Refusal.TRANSACTION_MISMATCH, presented_id, grant.transaction_hash)
        if check is not None and not await check(grant):
            return Presentation(None, Refusal.INSUFFICIENT, presented_id)
        if consume and grant.single_use:
            taken = await self.store.take(_grant_key(digest))
            if taken is None:
                return Presentation(None, Refusal.ALREADY_USED, presented_id)
            grant = loads(taken, Grant)
            refusal = self._refusal(grant, principal, scope)
            if refusal is not None:
                return Presentation(None, refusal, presented_id)
        return Presentation(grant, None, presented_id)

    async def peek(
        self,
        token: str | None,
        principal: Principal,
        scope: str,
        check: GrantCheck | None = None,
        transaction_hash: str | None = None,
    ) -> Grant | None:
        """The grant if ``token`` is valid for this user, session, scope and transaction, without
        consuming it."""
        return await self._grant(token, principal, scope, check, transaction_hash, consume=False)

    async def validate(
        self,
        token: str | None,
        principal: Principal,
        scope: str,
        check: GrantCheck | None = None,
        transaction_hash: str | None = None,
    ) -> Grant | None:
        """Validate for use: a single-use token is consumed atomically (one winner)."""
        return await self._grant(token, principal, scope, check, transaction_hash, consume=True)

    async def _grant(
        self,
        token: str | None,
        principal: Principal,
        scope: str,
        check: GrantCheck | None,
        transaction_hash: str | None,
        *,
        consume: bool,
    ) -> Grant | None:
        if not token:
            return None
        presented = await self.present(
            token, principal, scope, consume=consume, check=check, transaction_hash=transaction_hash
        )
        return presented.grant

    async def list_session(self, user_id: str, session_id: str) -> list[Grant]:
        now = self.clock.now()
        grants = [loads(v, Grant) for v in (await self.store.list_index(_session_index(user_id, session_id))).values()]
        return sorted((g for g in grants if g.expires_at > now), key=lambda g: g.issued_at)

    async def list_user(self, user_id: str) -> list[Grant]:
        """The user's live grants, every session, oldest first."""
        now = self.clock.now()
        grants = [loads(v, Grant) for v in (await self.store.list_index(_user_index(user_id))).values()]
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
