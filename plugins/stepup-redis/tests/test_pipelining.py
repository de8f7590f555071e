"""Operations asked for together go to Redis in one batch, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from stepup_redis.store import RedisStore, open_redis_store

from stepup_core.clock import SystemClock
from stepup_core.store.base import Counter, Write


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = await open_redis_store(redis_url, SystemClock())
    yield store
    await store.close()


def count_batches(store: RedisStore) -> list[int]:
    """The number of commands of each batch the store writes to Redis."""
    connections = store._connections
    send = connections._exchange_now
    sizes: list[int] = []

    async def counted(commands: Sequence[Sequence[Any]]) -> list[Any]:
        sizes.append(len(commands))
        return await send(commands)

    connections._exchange_now = counted  # type: ignore[method-assign]
    return sizes


async def test_concurrent_operations_of_every_kind_share_one_batch_and_count_exactly(store: RedisStore) -> None:
    await store.put("record", "v", ttl=300, indexes=("idx",))
    # Redis learns each script once (EVAL after EVALSHA's "no such script").
    await store.incr("warm", ttl=60)
    await store.reserve([Counter("warm-budget", 1, 60)])
    await store.add("warm-once", "x", ttl=60)
    await store.list_index("idx")
    batches = count_batches(store)
    limit = Counter("budget", 60, 300)
    results = await asyncio.gather(
        *(store.incr("hits", ttl=300) for _ in range(100)),
        *(store.reserve([limit]) for _ in range(80)),
        *(store.add("once", str(i), ttl=300) for i in range(20)),
        store.get("record"),
        store.list_index("idx"),
    )
    assert sorted(results[:100]) == list(range(1, 101))  # every increment counted once
    reservations = results[100:180]
    assert sum(r.granted for r in reservations) == 60  # never past the limit
    assert sum(results[180:200]) == 1  # one add wins
    assert results[200:] == ["v", {"record": "v"}]
    assert len(batches) <= 2, batches  # not one exchange per operation
    assert await store.get("hits") == "100"
    assert await store.get("budget") == "60"


async def test_a_failing_command_fails_its_own_caller_alone(store: RedisStore) -> None:
    await store.put("not-a-counter", "text")
    await store.incr("warm", ttl=60)
    await store.settle()
    batches = count_batches(store)
    results = await asyncio.gather(
        store.incr("not-a-counter", ttl=60),
        store.incr("counter", ttl=60),
        store.settle(writes=[Write("written", "w")]),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError)
    assert results[1:] == [1, True]
    assert batches == [3]
    assert await store.get("written") == "w"


async def test_an_operation_cancelled_before_its_batch_goes_out_is_not_sent(store: RedisStore) -> None:
    batches = count_batches(store)
    cancelled = asyncio.ensure_future(store.put("cancelled", "never written"))
    kept = asyncio.ensure_future(store.put("kept", "written"))
    await asyncio.sleep(0)  # both are queued; the batch goes out in the next loop turn
    cancelled.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert batches == [1]
    assert await store.get("cancelled") is None
    assert await store.get("kept") == "written"


async def test_closing_lets_the_batch_on_its_way_finish(store: RedisStore, redis_url: str) -> None:
    writes = [asyncio.ensure_future(store.put(f"k{i}", "v")) for i in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the batch is on its way
    await store.close()
    await asyncio.gather(*writes)  # answered, not failed
    other = await open_redis_store(redis_url, SystemClock())
    try:
        assert await asyncio.gather(*(other.get(f"k{i}") for i in range(10))) == ["v"] * 10
    finally:
        await other.close()
