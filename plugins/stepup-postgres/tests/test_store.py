"""The PostgreSQL store against a real cluster: conformance, layout, URLs, schema, expiry."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import stepup_postgres.plugin
from stepup_postgres.schema import LATEST_VERSION, MIGRATIONS
from stepup_postgres.store import PostgresStore, open_postgres_store, parse_store_url
from stepup_postgres.testing import PostgresCluster

from stepup_core.clock import ManualClock, SystemClock
from stepup_core.errors import ConfigError, StoreUnavailable
from stepup_core.plugins import get_plugin_manager
from stepup_core.store import open_store, store_factories
from stepup_core.testing.stores import StoreConformanceSuite, StoreScanSuite


class TestPostgresStore(StoreConformanceSuite, StoreScanSuite):
    @pytest.fixture
    async def store(self, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = await open_postgres_store(postgres_url, SystemClock())
        yield store
        await store.close()


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await open_postgres_store(postgres_url, SystemClock())
    yield store
    await store.close()


async def raw_connection(url: str) -> Any:
    import asyncpg

    parsed = parse_store_url(url)
    settings = {"search_path": parsed.schema} if parsed.schema else {}
    return await asyncpg.connect(parsed.dsn, server_settings=settings)


# ------------------------------------------------------------------------------------------
# registration and URLs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_both_url_schemes_open_a_postgres_store_through_the_plugin(
    postgres: PostgresCluster, schema_name: str, scheme: str
) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_postgres.plugin, name="postgres")
    assert {"postgresql", "postgres"} <= set(store_factories(pm))
    url = postgres.url("postgres", schema=schema_name).replace("postgresql://", f"{scheme}://", 1)
    store = await open_store(url, pm)
    try:
        assert isinstance(store, PostgresStore)
        await store.put("k", "v")
        assert await store.get("k") == "v"
    finally:
        await store.close()


def test_store_options_are_taken_from_the_url_and_the_rest_goes_to_the_driver() -> None:
    parsed = parse_store_url(
        "postgresql://app:s3cret@db.internal:6543/stepup?schema=auth&migrate=manual&max_size=20&sslmode=require"
    )
    assert parsed.schema == "auth"
    assert parsed.auto_migrate is False
    assert parsed.max_size == 20
    assert parsed.dsn == "postgresql://app:s3cret@db.internal:6543/stepup?sslmode=require"
    assert "s3cret" not in parsed.where
    assert parsed.where == "postgresql://db.internal:6543/stepup (schema auth)"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/db", "not a PostgreSQL store URL"),
        ("postgresql://h/db?schema=a;drop", "letters, digits and underscores"),
        ("postgresql://h/db?migrate=sometimes", "'auto' or 'manual'"),
        ("postgresql://h/db?max_size=none", "is not a number"),
        ("postgresql://h/db?min_size=5&max_size=2", "exceeds max_size"),
        ("postgresql://h:99999/db", "invalid PostgreSQL store URL"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_store_url(url)


# ------------------------------------------------------------------------------------------
# schema and migrations
# ------------------------------------------------------------------------------------------


async def test_opening_creates_the_schema_and_records_its_version(store: PostgresStore, postgres_url: str) -> None:
    await store.put("k", "v", ttl=60, indexes=["a", "b"])
    assert await store.schema_version() == LATEST_VERSION
    conn = await raw_connection(postgres_url)
    try:
        rows = await conn.fetch("SELECT version, description FROM stepup_schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in MIGRATIONS]
        row = await conn.fetchrow("SELECT value, indexes, expires_at > now() AS live FROM stepup_records WHERE key='k'")
        assert (row["value"], list(row["indexes"]), row["live"]) == ("v", ["a", "b"], True)
    finally:
        await conn.close()


async def test_manual_migration_refuses_to_serve_until_migrate_runs(postgres_url: str) -> None:
    store = await open_postgres_store(postgres_url + "&migrate=manual", SystemClock())
    try:
        with pytest.raises(StoreUnavailable, match="run `stepup migrate`"):
            await store.get("k")
        applied = await store.migrate()
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
        assert store.version_at_open == 0
        assert await store.get("k") is None
        assert await store.migrate() == []  # up to date: nothing to apply
    finally:
        await store.close()


async def test_a_schema_newer_than_the_code_is_refused(store: PostgresStore, postgres_url: str) -> None:
    await store.ping()
    conn = await raw_connection(postgres_url)
    try:
        await conn.execute(
            "INSERT INTO stepup_schema_version (version, description) VALUES ($1, 'from the future')",
            LATEST_VERSION + 1,
        )
    finally:
        await conn.close()
    with pytest.raises(StoreUnavailable, match="newer than this stepup-postgres understands"):
        await open_postgres_store(postgres_url, SystemClock())


async def test_instances_opening_together_migrate_once(postgres_url: str) -> None:
    stores = [PostgresStore(parse_store_url(postgres_url)) for _ in range(5)]
    try:
        await asyncio.gather(*(s.put(f"k{i}", "v") for i, s in enumerate(stores)))
        assert [await s.get(f"k{i}") for i, s in enumerate(stores)] == ["v"] * 5
        conn = await raw_connection(postgres_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM stepup_schema_version") == len(MIGRATIONS)
        finally:
            await conn.close()
    finally:
        for s in stores:
            await s.close()


# ------------------------------------------------------------------------------------------
# expiry
# ------------------------------------------------------------------------------------------


async def test_expired_rows_are_purged_in_bounded_batches(store: PostgresStore, postgres_url: str) -> None:
    store.purge_batch = 40
    conn = await raw_connection(postgres_url)
    try:
        await store.ping()
        await conn.execute(
            "INSERT INTO stepup_records (key, value, expires_at) "
            "SELECT 'old-' || i, 'x', now() - interval '1 minute' FROM generate_series(1, 100) AS i"
        )
        await store.put("live", "v", ttl=300)
        await store.put("forever", "v")
        assert await store.purge_expired(max_batches=1) == 40  # one statement deletes one batch
        assert await conn.fetchval("SELECT count(*) FROM stepup_records WHERE key LIKE 'old-%'") == 60
        assert await store.purge_expired() == 60
        assert await conn.fetchval("SELECT count(*) FROM stepup_records") == 2
    finally:
        await conn.close()


async def test_the_database_clock_decides_expiry(store: PostgresStore, postgres_url: str) -> None:
    # The injected clock is not used: a store opened with a clock far in the future still sees
    # a fresh record as live, so every instance agrees whatever its own clock says.
    await store.put("k", "v", ttl=30)
    future = await open_postgres_store(postgres_url, ManualClock(current=time.time() + 3600))
    try:
        assert await future.get("k") == "v"
        await future.put("k2", "w", ttl=30)
        assert await store.get("k2") == "w"
    finally:
        await future.close()


async def test_scan_pages_through_live_records_under_a_prefix(store: PostgresStore) -> None:
    for i in range(25):
        await store.put(f"cred:u{i:02d}", f"v{i}")
    await store.put("cred:gone", "x", ttl=-1)
    await store.put("creed", "not under the prefix")
    seen = [key async for key, _ in store.scan("cred:", batch=7)]
    assert seen == [f"cred:u{i:02d}" for i in range(25)]


# ------------------------------------------------------------------------------------------
# outage
# ------------------------------------------------------------------------------------------


async def test_an_outage_raises_store_unavailable_and_the_store_recovers_by_itself(
    make_cluster: Callable[[], PostgresCluster],
) -> None:
    cluster = make_cluster()
    store = await open_postgres_store(cluster.url("postgres"), SystemClock())
    try:
        await store.put("k", "before", indexes=["idx"])
        await asyncio.gather(*(store.incr("warm", ttl=60) for _ in range(20)))  # several pooled connections
        assert await store.get("k") == "before"  # the reads' own connection, held, dies too
        await asyncio.to_thread(cluster.stop)
        for operation in (
            store.get("k"),
            store.put("k", "v"),
            store.take("k"),
            store.delete("k"),
            store.add("n", "v", ttl=60),
            store.incr("c", ttl=60),
            store.compare_and_set("k", "before", "after"),
            store.list_index("idx"),
            store.ping(),
        ):
            with pytest.raises(StoreUnavailable, match="is unavailable"):
                await operation
        await asyncio.to_thread(cluster.start)
        assert await store.get("k") == "before"
        assert await store.list_index("idx") == {"k": "before"}
        assert await store.incr("warm", ttl=60) == 21
    finally:
        await store.close()


@pytest.mark.parametrize("max_size", [1, 2])
async def test_reads_keep_a_connection_without_starving_writes(postgres_url: str, max_size: int) -> None:
    # The token lookups keep one pooled connection for themselves; a pool of one keeps none,
    # and a pool of two leaves the other to every write, however they interleave.
    store = await open_postgres_store(f"{postgres_url}&min_size=1&max_size={max_size}", SystemClock())
    try:
        await store.put("k", "v")
        for round_no in range(3):
            assert await asyncio.wait_for(store.get("k"), 5) == "v"
            await asyncio.wait_for(store.put(f"w{round_no}", "x", indexes=["idx"]), 5)
        mixed = await asyncio.wait_for(
            asyncio.gather(*(store.get("k") for _ in range(30)), *(store.incr("c", ttl=60) for _ in range(30))), 10
        )
        assert mixed[:30] == ["v"] * 30 and sorted(mixed[30:]) == list(range(1, 31))
        assert await asyncio.wait_for(store.list_index("idx"), 5) == {"w0": "x", "w1": "x", "w2": "x"}
    finally:
        await asyncio.wait_for(store.close(), 10)


async def test_opening_while_the_database_is_down_warns_and_serves_once_it_is_up(
    make_cluster: Callable[[], PostgresCluster], caplog: pytest.LogCaptureFixture
) -> None:
    cluster = make_cluster()
    await asyncio.to_thread(cluster.stop)
    store = await open_postgres_store(cluster.url("postgres", connect_timeout="2"), SystemClock())
    try:
        assert "answers 'store unavailable' until it can reach PostgreSQL" in caplog.text
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        await asyncio.to_thread(cluster.start)
        await store.put("k", "v")  # the schema is created on first contact
        assert await store.get("k") == "v"
        assert await store.schema_version() == LATEST_VERSION
    finally:
        await store.close()


async def test_a_record_that_is_not_a_counter_is_a_value_error_not_an_outage(store: PostgresStore) -> None:
    await store.put("k", "text")
    with pytest.raises(ValueError, match="not a counter") as info:
        await store.incr("k", ttl=60)
    assert not isinstance(info.value, StoreUnavailable)


def test_the_cluster_never_runs_as_root(postgres: PostgresCluster) -> None:
    pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0
    if os.geteuid() == 0:
        assert postgres.run_as is not None
        assert uid == postgres.run_as.pw_uid
        assert postgres.data_dir.stat().st_uid == postgres.run_as.pw_uid
    else:
        assert postgres.run_as is None
        assert uid == os.geteuid()
    # Loopback only: the server listens on 127.0.0.1 and its socket sits in the cluster directory.
    conf = (postgres.data_dir / "postmaster.opts").read_text()
    assert "listen_addresses=127.0.0.1" in conf
    assert f"unix_socket_directories={postgres.socket_dir}" in conf


@pytest.mark.parametrize("count", [1, 2, 3, 5, 200, 300])
async def test_a_batch_of_any_size_answers_exactly_its_live_keys(store: PostgresStore, count: int) -> None:
    # Batches are padded to the next prepared size with their last key; past the largest
    # (256) one array statement answers.
    await asyncio.gather(*(store.put(f"k{i}", f"v{i}", ttl=300) for i in range(0, count, 2)))
    await store.put(f"k{count - 1}", "expired", ttl=0.001)
    await asyncio.sleep(0.01)
    keys = [f"k{i}" for i in range(count)]
    expected = {f"k{i}": f"v{i}" for i in range(0, count, 2) if i != count - 1}
    assert await store.fetch_many(keys) == expected
    assert await store.fetch_many(list(reversed(keys))) == expected
