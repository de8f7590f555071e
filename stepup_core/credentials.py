"""Credentials kept in the store, one record per credential, listed by user."""

from __future__ import annotations

import attrs

from .models import Credential
from .serialization import dumps, loads
from .store.base import Store, make_key


def _credential_key(user_id: str, credential_id: str) -> str:
    return make_key("cred", user_id, credential_id)


def _user_index(user_id: str) -> str:
    return make_key("creds", user_id)


#: Every stored credential's key starts with this (``cred:<user>:<id>``).
CREDENTIAL_KEY_PREFIX = make_key("cred") + ":"


@attrs.define
class StoreCredentialRepository:
    store: Store

    async def list_for_user(self, user_id: str) -> list[Credential]:
        records = await self.store.list_index(_user_index(user_id))
        credentials = [loads(raw, Credential) for raw in records.values()]
        return sorted(credentials, key=lambda c: (c.created_at, c.id))

    async def get(self, user_id: str, credential_id: str) -> Credential | None:
        raw = await self.store.get(_credential_key(user_id, credential_id))
        return None if raw is None else loads(raw, Credential)

    async def save(self, credential: Credential) -> None:
        if credential.external:
            raise ValueError("credentials supplied by the application are not stored by stepup")
        await self.store.put(
            _credential_key(credential.user_id, credential.id),
            dumps(credential),
            indexes=(_user_index(credential.user_id),),
        )

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
        return await self.store.delete(_credential_key(user_id, credential_id))
