"""Coalesced gets on a real PostgreSQL cluster: one statement serves many concurrent lookups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from stepup_postgres.store import PostgresStore, open_postgres_store, parse_store_url
from stepup_postgres.testing import PostgresCluster

from stepup_core.clock import SystemClock
from stepup_core.errors import StoreUnavailable
from stepup_core.testing.coalescing import FetchRecorder, ListingCoalescingSuite, ReadCoalescingSuite

from .conftest import require_postgres


class TestPostgresReadCoalescing(ReadCoalescingSuite, ListingCoalescingSuite):
    @pytest.fixture
    async def store(self, postgres_url: str) -> AsyncIterator[PostgresStore]:
        store = await open_postgres_store(postgres_url, SystemClock())
        yield store
        await store.close()


@pytest.fixture
def logging_cluster() -> Iterator[PostgresCluster]:
    """A cluster of the test's own that logs every statement it runs."""
    require_postgres()
    cluster = PostgresCluster.create(settings={"log_statement": "all"})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def own_store(logging_cluster: PostgresCluster) -> AsyncIterator[PostgresStore]:
    store = await open_postgres_store(logging_cluster.url("postgres"), SystemClock())
    yield store
    await store.close()


def statements_run(cluster: PostgresCluster, fragment: str) -> int:
    """How many executions of statements containing ``fragment`` the server logged (``execute
    <name>: ...`` for a prepared statement, ``statement: ...`` for a simple query)."""
    lines = cluster.log_path.read_text(errors="replace").splitlines()
    return sum(1 for line in lines if fragment in line and ("statement: " in line or " execute " in line))


async def test_200_concurrent_gets_cost_one_statement_as_the_server_logs(
    logging_cluster: PostgresCluster, own_store: PostgresStore
) -> None:
    await asyncio.gather(*(own_store.put(f"k{i}", f"v{i}", ttl=300) for i in range(40)))
    await own_store.put("expired", "gone", ttl=0.001)  # its row stays until the purge: never returned
    await asyncio.sleep(0.05)
    fetches = FetchRecorder(own_store.fetch_many).install(own_store)
    before = statements_run(logging_cluster, "WHERE key IN (")
    keys = [f"k{i % 50}" for i in range(190)] + ["expired"] * 10  # 40 present, 10 absent, one expired
    results = await asyncio.gather(*(own_store.get(key) for key in keys))
    assert results == [f"v{i % 50}" if i % 50 < 40 else None for i in range(190)] + [None] * 10
    assert len(fetches.calls) == 1 and len(fetches.calls[0]) == 51
    assert statements_run(logging_cluster, "WHERE key IN (") - before == 1


async def hold_a_batch(cluster: PostgresCluster, store: PostgresStore) -> tuple[Any, list[asyncio.Future[Any]]]:
    """200 gets whose one statement reached the server and waits on a table lock another
    session holds; returns that session and the waiting gets."""
    import asyncpg

    await asyncio.gather(*(store.put(f"k{i}", "v", ttl=300) for i in range(10)))
    locker = await asyncpg.connect(cluster.url("postgres"))
    await locker.execute("BEGIN; LOCK TABLE stepup_records IN ACCESS EXCLUSIVE MODE")
    waiters = [asyncio.ensure_future(store.get(f"k{i % 30}")) for i in range(200)]
    deadline = time.monotonic() + 10
    while not await locker.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WHERE key IN (%'"
    ):
        assert time.monotonic() < deadline, "the batch never reached the server"
        await asyncio.sleep(0.02)
    assert not any(w.done() for w in waiters)
    return locker, waiters


async def test_postgres_stopped_while_a_batch_waits_fails_every_waiter(
    logging_cluster: PostgresCluster, own_store: PostgresStore
) -> None:
    fetches = FetchRecorder(own_store.fetch_many).install(own_store)
    locker, waiters = await hold_a_batch(logging_cluster, own_store)
    try:
        started = time.monotonic()
        # Every server process quits at once: the lock is not released first, so the waiting
        # statement cannot slip through on the way down.
        await asyncio.to_thread(logging_cluster.stop, immediate=True)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), {repr(r) for r in results}
        assert time.monotonic() - started < 10
        assert len(fetches.calls) == 1
    finally:
        locker.terminate()


async def test_a_fast_shutdown_under_a_waiting_batch_never_leaks_a_driver_error(
    logging_cluster: PostgresCluster, own_store: PostgresStore
) -> None:
    # A fast shutdown ends the sessions one by one: the waiting statement may still be answered
    # (the lock's holder went first) or fail, in ways asyncpg reports differently (a dropped
    # connection, or its own state broken mid-statement): every failure is StoreUnavailable.
    locker, waiters = await hold_a_batch(logging_cluster, own_store)
    try:
        await asyncio.to_thread(logging_cluster.stop)
        results = await asyncio.gather(*waiters, return_exceptions=True)
        for i, result in enumerate(results):
            assert isinstance(result, StoreUnavailable) or result == ("v" if i % 30 < 10 else None), repr(result)
    finally:
        locker.terminate()


def test_the_drivers_broken_state_error_is_store_unavailable() -> None:
    import asyncpg

    store = PostgresStore(parse_store_url("postgresql://127.0.0.1:5432/app"))  # never connected

    # What asyncpg raised when a fast shutdown dropped a connection mid-statement.
    raw = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    translated = store._translate(raw, "get")
    assert isinstance(translated, StoreUnavailable) and translated.code == "store_unavailable"
