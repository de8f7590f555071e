"""Coalesced gets on a real redis-server: one exchange serves many concurrent lookups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from stepup_redis.store import RedisStore, open_redis_store
from stepup_redis.testing import RedisServer

from stepup_core.clock import SystemClock
from stepup_core.errors import StoreUnavailable
from stepup_core.testing.coalescing import FetchRecorder, ListingCoalescingSuite, ReadCoalescingSuite


class TestRedisReadCoalescing(ReadCoalescingSuite, ListingCoalescingSuite):
    @pytest.fixture
    async def store(self, redis_url: str) -> AsyncIterator[RedisStore]:
        store = await open_redis_store(redis_url, SystemClock())
        yield store
        await store.close()


@pytest.fixture
async def own_store(own_redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = await open_redis_store(f"{own_redis_server.url}?prefix=co:", SystemClock())
    yield store
    await store.close()


@pytest.fixture
async def raw(own_redis_server: RedisServer) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(own_redis_server.url, decode_responses=True)
    await client.ping()
    yield client
    await client.aclose()


def count_exchanges(store: RedisStore) -> list[int]:
    """Counts the exchanges (one written request, its replies read) the store makes."""
    connections = store._connections
    exchange = connections.exchange
    sizes: list[int] = []

    async def counted(commands: Sequence[Sequence[Any]]) -> list[Any]:
        sizes.append(len(commands))
        return await exchange(commands)

    connections.exchange = counted  # type: ignore[method-assign]
    return sizes


async def server_counts(raw: Any) -> tuple[int, int]:
    """(HGET commands the server ran, connections it accepted), as Redis itself counts them."""
    commands = await raw.info("commandstats")
    stats = await raw.info("stats")
    return int(commands.get("cmdstat_hget", {}).get("calls", 0)), int(stats["total_connections_received"])


async def test_200_concurrent_gets_cost_one_exchange_as_the_server_counts(own_store: RedisStore, raw: Any) -> None:
    await asyncio.gather(*(own_store.put(f"k{i}", f"v{i}", ttl=300) for i in range(40)))
    exchanges = count_exchanges(own_store)
    hgets_before, connections_before = await server_counts(raw)
    keys = [f"k{i % 50}" for i in range(200)]  # 40 present and 10 absent keys, four times each
    results = await asyncio.gather(*(own_store.get(key) for key in keys))
    assert results == [f"v{i % 50}" if i % 50 < 40 else None for i in range(200)]
    hgets_after, connections_after = await server_counts(raw)
    assert exchanges == [50]  # one exchange carrying one HGET per distinct key
    assert hgets_after - hgets_before == 50
    assert connections_after - connections_before <= 1  # not a connection per waiting request


async def test_a_key_holding_another_type_fails_its_own_gets_alone(own_store: RedisStore, raw: Any) -> None:
    await own_store.put("good", "v")
    await raw.set("co:r:bad", "a plain string, not a record hash")
    results = await asyncio.gather(
        own_store.get("good"), own_store.get("bad"), own_store.get("absent"), return_exceptions=True
    )
    assert results[0] == "v"
    assert isinstance(results[1], StoreUnavailable) and "WRONGTYPE" in str(results[1])
    assert results[2] is None


async def test_redis_stopped_while_a_batch_waits_fails_every_waiter(
    own_redis_server: RedisServer, own_store: RedisStore, raw: Any
) -> None:
    await asyncio.gather(*(own_store.put(f"k{i}", "v", ttl=300) for i in range(10)))
    fetches = FetchRecorder(own_store.fetch_many).install(own_store)
    await raw.execute_command("CLIENT", "PAUSE", "20000", "ALL")  # the batch is sent, not answered
    waiters = [asyncio.ensure_future(own_store.get(f"k{i % 30}")) for i in range(200)]
    while not fetches.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waiters)
    started = time.monotonic()
    await asyncio.to_thread(own_redis_server.stop)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), {type(r) for r in results}
    assert time.monotonic() - started < 5
    assert len(fetches.calls) == 1
