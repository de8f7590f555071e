"""The PostgreSQL store against a real cluster: conformance, layout, URLs, schema, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from stepup_postgres.store import PostgresStore, open_postgres_store

from stepup_core.clock import SystemClock
from stepup_core.testing.stores import StoreConformanceSuite


class TestPostgresStore(StoreConformanceSuite):
    @pytest.fixture
    async def store(self, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = await open_postgres_store(postgres_url, SystemClock())
        yield store
        await store.close()
