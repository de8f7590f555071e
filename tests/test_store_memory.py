"""The in-process memory store passes the store conformance suite."""

from __future__ import annotations

import asyncio
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


async def test_expired_records_leave_memory_on_a_schedule_without_being_read() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    for i in range(1000):
        await store.put(f"grant:{i}", "g", ttl=60, indexes=["user:u", f"session:{i}"])
    await store.put("credential", "c", indexes=["user:u"])
    assert store.held_records == 1001
    clock.advance(store.purge_interval + 61)
    await store.ping()  # any operation starts the purge once the interval has passed
    await store.purge_finished()
    assert store.held_records == 1
    assert store._indexes == {"user:u": {"credential"}}
    assert await store.list_index("user:u") == {"credential": "c"}
    await store.close()


async def test_a_purge_gives_the_loop_back_between_batches() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock, purge_batch=100)
    for i in range(1000):
        await store.put(f"k{i}", "v", ttl=1)
    clock.advance(store.purge_interval + 2)
    await store.ping()
    steps = 0
    while store._purger is not None:  # another task runs between every batch
        held = store.held_records
        assert held >= 1000 - (steps + 1) * store.purge_batch
        steps += 1
        await asyncio.sleep(0)
    assert store.held_records == 0
    assert steps >= 1000 // store.purge_batch
    await store.close()


async def test_rewriting_live_records_does_not_grow_the_expiry_heap_without_bound() -> None:
    store = MemoryStore(clock=ManualClock())
    for i in range(50_000):
        await store.put(f"k{i % 10}", str(i), ttl=3600)
    assert store.held_records == 10
    assert len(store._expiries) <= 2 * store.held_records + 1024
    assert await store.get("k9") == "49999"
    await store.close()
