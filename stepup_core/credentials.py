"""Credentials kept in the store, one record per credential, listed by user.

When a credential was last used is kept beside it, in a small record of its own in the same
user listing (``cred-used:<user>:<credential>``), so a verification records the use with a
blind write in the same atomic step as its grant (:meth:`StoreCredentialRepository.last_used_write`)
instead of reading and rewriting the credential, which could also undo a change a method made
to the credential meanwhile. Reading a credential merges the two.
"""

from __future__ import annotations

import attrs

from .models import Credential
from .serialization import dumps, loads
from .store.base import Store, Write, make_key

_LAST_USED = "cred-used"


def _credential_key(user_id: str, credential_id: str) -> str:
    return make_key("cred", user_id, credential_id)


def _last_used_key(user_id: str, credential_id: str) -> str:
    return make_key(_LAST_USED, user_id, credential_id)


def _user_index(user_id: str) -> str:
    return make_key("creds", user_id)


def _with_last_use(credential: Credential, recorded: str | None) -> Credential:
    if recorded is None:
        return credential
    at = float(recorded)
    if credential.last_used_at is not None and credential.last_used_at >= at:
        return credential
    return attrs.evolve(credential, last_used_at=at)


#: Parsed credentials kept by their stored JSON, so a listing does not re-parse what it parsed
#: before; the store is still read every time.
_PARSED_MAX = 4096

#: Every stored credential's key starts with this (``cred:<user>:<id>``).
CREDENTIAL_KEY_PREFIX = make_key("cred") + ":"


@attrs.define
class StoreCredentialRepository:
    store: Store
    _parsed: dict[str, Credential] = attrs.field(factory=dict, init=False, repr=False)

    def _parse(self, raw: str, shared: bool = False) -> Credential:
        credential = self._parsed.get(raw)
        if credential is None:
            credential = loads(raw, Credential)
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[raw] = credential
        if shared:
            return credential
        # A copy of its own for every caller: one that sets a field changes no one else's.
        return attrs.evolve(credential, data=dict(credential.data))

    async def list_for_user(self, user_id: str, *, shared: bool = False) -> list[Credential]:
        """The user's stored credentials, oldest first. Each is the caller's own copy, unless
        ``shared``: then credentials parsed before may be handed out as they are, to a caller that
        only reads them (a check, which builds views) and must change none."""
        records = await self.store.list_index(_user_index(user_id))
        last_used = _LAST_USED + ":"
        credentials = [self._parse(raw, shared) for key, raw in records.items() if not key.startswith(last_used)]
        merged = [_with_last_use(c, records.get(_last_used_key(user_id, c.id))) for c in credentials]
        return sorted(merged, key=lambda c: (c.created_at, c.id))

    async def get(self, user_id: str, credential_id: str) -> Credential | None:
        raw = await self.store.get(_credential_key(user_id, credential_id))
        if raw is None:
            return None
        return _with_last_use(loads(raw, Credential), await self.store.get(_last_used_key(user_id, credential_id)))

    async def save(self, credential: Credential) -> None:
        write = self.write(credential)
        await self.store.put(write.key, write.value, indexes=write.indexes)

    def write(self, credential: Credential) -> Write:
        """The write that stores ``credential``, for :meth:`Store.settle`."""
        if credential.external:
            raise ValueError("credentials supplied by the application are not stored by stepup")
        return Write(
            _credential_key(credential.user_id, credential.id),
            dumps(credential),
            indexes=(_user_index(credential.user_id),),
        )

    def last_used_write(self, credential: Credential, at: float) -> Write:
        """The write that records a use of ``credential`` at ``at``, for :meth:`Store.settle`."""
        key = _last_used_key(credential.user_id, credential.id)
        return Write(key, repr(at), None, (_user_index(credential.user_id),))

    async def replace(self, stored: str, credential: Credential) -> bool:
        """Write ``credential`` only if its record still reads ``stored`` (its raw JSON): a change
        made meanwhile by a running server is never overwritten. True when written."""
        return await self.store.compare_and_set(
            _credential_key(credential.user_id, credential.id),
            stored,
            dumps(credential),
            indexes=(_user_index(credential.user_id),),
        )

    async def delete(self, user_id: str, credential_id: str) -> bool:
        await self.store.delete(_last_used_key(user_id, credential_id))
        return await self.store.delete(_credential_key(user_id, credential_id))
