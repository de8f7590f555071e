"""The in-process memory store passes the store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stepup_core.clock import ManualClock, SystemClock
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.stores import StoreConformanceSuite, StoreScanSuite


class TestMemoryStore(StoreConformanceSuite, StoreScanSuite):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore(clock=SystemClock())
        yield store
        await store.close()


async def test_memory_store_expiry_follows_the_injected_clock() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    await store.put("k", "v", ttl=10, indexes=["idx"])
    clock.advance(9.999)
    assert await store.get("k") == "v"
    clock.advance(0.001)
    assert await store.get("k") is None
    assert await store.list_index("idx") == {}
