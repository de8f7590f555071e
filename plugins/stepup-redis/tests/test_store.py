"""The Redis store against a real redis-server: conformance, layout, URLs, failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stepup_redis.plugin
from stepup_redis.store import DEFAULT_PREFIX, MIN_SERVER_VERSION, RedisStore, open_redis_store, parse_version
from stepup_redis.testing import RedisServer, free_port

from stepup_core.clock import ManualClock, SystemClock
from stepup_core.errors import ConfigError, StoreUnavailable
from stepup_core.plugins import get_plugin_manager
from stepup_core.store import open_store, store_factories
from stepup_core.testing.stores import StoreConformanceSuite, StoreScanSuite


class TestRedisStore(StoreConformanceSuite, StoreScanSuite):
    @pytest.fixture
    async def store(self, redis_url: str) -> AsyncIterator[RedisStore]:
        store = await open_redis_store(redis_url, SystemClock())
        yield store
        await store.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis client on the shared server, to look at what the store wrote."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = await open_redis_store(redis_url, SystemClock())
    yield store
    await store.close()


# ------------------------------------------------------------------------------------------
# layout: prefix, native TTLs, index sets
# ------------------------------------------------------------------------------------------


async def test_every_key_lives_under_the_prefix(store: RedisStore, key_prefix: str, raw: Any) -> None:
    await store.put("grant:1", "g", ttl=60, indexes=["session:a"])
    await store.incr("failures", ttl=60)
    await store.add("nonce", "n", ttl=60)
    keys = sorted(await raw.keys(f"{key_prefix}*"))
    assert keys == [
        f"{key_prefix}i:session:a",
        f"{key_prefix}r:failures",
        f"{key_prefix}r:grant:1",
        f"{key_prefix}r:nonce",
    ]


async def test_two_prefixes_on_one_server_do_not_see_each_other(redis_server: RedisServer) -> None:
    first = await open_redis_store(f"{redis_server.url}?prefix=app-one:", SystemClock())
    second = await open_redis_store(f"{redis_server.url}?prefix=app-two:", SystemClock())
    try:
        await first.put("shared-name", "one", indexes=["idx"])
        assert await second.get("shared-name") is None
        assert await second.list_index("idx") == {}
        assert await second.add("shared-name", "two", ttl=60) is True
        assert await first.get("shared-name") == "one"
    finally:
        await first.delete("shared-name")
        await second.delete("shared-name")
        await first.close()
        await second.close()


async def test_the_default_prefix_is_stepup(redis_server: RedisServer, raw: Any) -> None:
    store = await open_redis_store(redis_server.url, SystemClock())
    try:
        assert store.prefix == DEFAULT_PREFIX == "stepup:"
        await store.put("default-prefix-probe", "v", ttl=30)
        assert await raw.hget("stepup:r:default-prefix-probe", "v") == "v"
    finally:
        await store.delete("default-prefix-probe")
        await store.close()


async def test_ttls_are_native_redis_expiries(store: RedisStore, key_prefix: str, raw: Any) -> None:
    await store.put("timed", "v", ttl=42)
    await store.put("forever", "v")
    await store.incr("counter", ttl=7)
    assert 41_000 < await raw.pttl(f"{key_prefix}r:timed") <= 42_000
    assert await raw.pttl(f"{key_prefix}r:forever") == -1
    assert 6_000 < await raw.pttl(f"{key_prefix}r:counter") <= 7_000
    await store.incr("counter", ttl=1000)
    assert await raw.pttl(f"{key_prefix}r:counter") <= 7_000


async def test_the_store_ignores_the_injected_clock(redis_url: str) -> None:
    # Expiry is the server's: every instance agrees on it, whatever its own clock says.
    clock = ManualClock()
    store = await open_redis_store(redis_url, clock)
    try:
        await store.put("k", "v", ttl=60)
        clock.advance(3600)
        assert await store.get("k") == "v"
    finally:
        await store.close()


async def test_index_sets_outlive_their_members_and_drop_expired_ones(
    store: RedisStore, key_prefix: str, raw: Any
) -> None:
    index_key = f"{key_prefix}i:session"
    await store.put("short", "s", ttl=0.3, indexes=["session"])
    await store.put("long", "l", ttl=50, indexes=["session"])
    assert 49_000 < await raw.pttl(index_key) <= 50_000
    await asyncio.sleep(0.45)
    assert await raw.scard(index_key) == 2  # the expired member is still a member ...
    assert await store.list_index("session") == {"long": "l"}
    assert await raw.smembers(index_key) == {"long"}  # ... until the next listing drops it
    await store.put("permanent", "p", indexes=["session"])
    assert await raw.pttl(index_key) == -1


async def test_writes_into_a_listing_trim_its_expired_members(store: RedisStore, key_prefix: str, raw: Any) -> None:
    index_key = f"{key_prefix}i:busy"
    await store.put("anchor", "a", ttl=600, indexes=["busy"])  # keeps the set alive
    started = time.monotonic()
    await asyncio.gather(*(store.put(f"old-{i}", "o", ttl=2.0, indexes=["busy"]) for i in range(500)))
    assert time.monotonic() - started < 2.0, "the machine is too slow for this test's timing"
    assert await raw.scard(index_key) == 501
    await asyncio.sleep(max(0.0, started + 2.2 - time.monotonic()))
    for i in range(1000):  # never listed: only the writes trim
        await store.put(f"new-{i}", "n", ttl=600, indexes=["busy"])
    # Two members checked per write: of 500 expired members some 13 remain (never above 30 in
    # 2000 simulated runs), where without trimming all 500 would.
    assert await raw.scard(index_key) < 1001 + 100
    assert len(await store.list_index("busy")) == 1001


async def test_an_index_set_of_expiring_members_expires_too(store: RedisStore, key_prefix: str, raw: Any) -> None:
    await store.put("a", "1", ttl=0.2, indexes=["gone-soon"])
    await store.put("b", "2", ttl=0.3, indexes=["gone-soon"])
    await asyncio.sleep(0.45)
    assert await raw.exists(f"{key_prefix}i:gone-soon") == 0


async def test_incr_on_a_non_counter_is_a_value_error(store: RedisStore) -> None:
    await store.put("text", "not a number")
    with pytest.raises(ValueError, match="not a counter"):
        await store.incr("text", ttl=10)


# ------------------------------------------------------------------------------------------
# plugin and URLs
# ------------------------------------------------------------------------------------------


def test_the_plugin_registers_redis_and_rediss() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_redis.plugin, name="redis")
    factories = store_factories(pm)
    assert factories["redis"] is stepup_redis.plugin.open_store
    assert factories["rediss"] is stepup_redis.plugin.open_store


async def test_open_store_by_url_through_the_plugin_manager(redis_url: str) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_redis.plugin, name="redis")
    store = await open_store(redis_url, pm)
    try:
        assert isinstance(store, RedisStore)
        await store.put("k", "v")
        assert await store.get("k") == "v"
    finally:
        await store.close()


def test_registering_the_plugin_does_not_import_redis() -> None:
    code = (
        "import sys, stepup_redis.plugin\n"
        "from stepup_core.plugins import get_plugin_manager\n"
        "pm = get_plugin_manager(load_entrypoints=False)\n"
        "pm.register(stepup_redis.plugin, name='redis')\n"
        "from stepup_core.store import store_factories\n"
        "store_factories(pm)\n"
        "loaded = sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://127.0.0.1:notaport/0", "invalid Redis store URL"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "socket_timeout"),
        ("redis://127.0.0.1:6379/0?no_such_option=1", "no_such_option"),
        ("memcached://127.0.0.1:11211", "not a Redis store URL"),
    ],
)
async def test_bad_urls_are_config_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        await open_redis_store(url, SystemClock())


# ------------------------------------------------------------------------------------------
# failures
# ------------------------------------------------------------------------------------------


async def test_nothing_listening_means_store_unavailable_quickly(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    started = time.monotonic()
    store = await open_redis_store(f"redis://user:s3cret-password@127.0.0.1:{port}/0", SystemClock())
    try:
        assert "unreachable" in caplog.text  # a wrong address shows at start-up
        with pytest.raises(StoreUnavailable) as info:
            await store.get("k")
        with pytest.raises(StoreUnavailable):
            await store.take("k")
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()
    assert time.monotonic() - started < 5
    assert info.value.code == "store_unavailable"
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in caplog.text


async def test_the_server_version_is_read(store: RedisStore) -> None:
    version = await store.server_version()
    assert version is not None
    assert version >= MIN_SERVER_VERSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7.0.15", (7, 0, 15)), ("6.2.6", (6, 2, 6)), ("7.2", (7, 2)), ("", None), ("7.0.0-rc1", None)],
)
def test_parse_version(text: str, expected: tuple[int, ...] | None) -> None:
    assert parse_version(text) == expected
    if expected is not None:
        assert (expected >= MIN_SERVER_VERSION) is (expected[0] >= 7)
