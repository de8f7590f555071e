"""Redis goes away under a running store and comes back: StoreUnavailable, then recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from stepup_redis.store import RedisStore, open_redis_store
from stepup_redis.testing import RedisServer

from stepup_core.clock import SystemClock
from stepup_core.errors import StoreUnavailable


def every_operation(store: RedisStore) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.get("k"),
        lambda: store.put("k", "v", ttl=60, indexes=["idx"]),
        lambda: store.take("k"),
        lambda: store.delete("k"),
        lambda: store.add("nonce", "n", ttl=60),
        lambda: store.incr("counter", ttl=60),
        lambda: store.compare_and_set("cas", None, "1"),
        lambda: store.list_index("idx"),
        lambda: store.ping(),
    ]


async def test_an_outage_raises_store_unavailable_and_the_store_recovers_by_itself(
    own_redis_server: RedisServer,
) -> None:
    store = await open_redis_store(f"{own_redis_server.url}?prefix=outage:", SystemClock())
    try:
        await store.put("k", "before", indexes=["idx"])
        # Several pooled connections, all of which die with the server.
        await asyncio.gather(*(store.incr("warm", ttl=60) for _ in range(20)))

        await asyncio.to_thread(own_redis_server.stop)
        started = time.monotonic()
        for operation in every_operation(store):
            with pytest.raises(StoreUnavailable) as info:
                await operation()
            assert info.value.code == "store_unavailable"
            assert info.value.__cause__ is not None  # the redis error is kept as the cause ...
            assert "redis" in type(info.value.__cause__).__module__ or isinstance(info.value.__cause__, OSError)
        results = await asyncio.gather(*(store.get(f"k{i}") for i in range(20)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results  # ... never raised raw
        assert time.monotonic() - started < 5, "an outage must fail fast, not hang"

        await asyncio.to_thread(own_redis_server.start)  # same port, empty (no persistence)
        await store.ping()
        assert await store.get("k") is None
        await store.put("k", "after", ttl=60, indexes=["idx"])
        assert await store.list_index("idx") == {"k": "after"}
        assert await store.take("k") == "after"
        assert await store.add("nonce", "n", ttl=60) is True
        assert await store.incr("counter", ttl=60) == 1
        assert await store.compare_and_set("cas", None, "1") is True
    finally:
        await store.close()


async def test_a_quick_restart_fails_no_operation(own_redis_server: RedisServer) -> None:
    store = await open_redis_store(own_redis_server.url, SystemClock())
    try:
        await store.put("k", "v")
        await asyncio.gather(*(store.incr("warm", ttl=60) for _ in range(20)))
        # Redis restarts between two requests: the pooled connections are dead, but the next
        # operations go through on fresh ones instead of failing.
        await asyncio.to_thread(own_redis_server.stop)
        await asyncio.to_thread(own_redis_server.start)
        results = await asyncio.gather(*(store.incr("after-restart", ttl=60) for _ in range(20)))
        assert sorted(results) == list(range(1, 21))
        # The Lua scripts were flushed with the restart and are loaded again as needed.
        await store.put("k2", "v2", indexes=["idx"])
        assert await store.take("k2") == "v2"
    finally:
        await store.close()


async def test_redis_starting_after_the_store_opened(own_redis_server: RedisServer) -> None:
    await asyncio.to_thread(own_redis_server.stop)
    store = await open_redis_store(own_redis_server.url, SystemClock())
    try:
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        await asyncio.to_thread(own_redis_server.start)
        await store.put("k", "v")
        assert await store.get("k") == "v"
    finally:
        await store.close()
