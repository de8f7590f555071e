"""The SQLite store: conformance, durability across restarts, WAL, failures, opening by URL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepup_core.clock import ManualClock, SystemClock
from stepup_core.errors import ConfigError, StoreUnavailable
from stepup_core.plugins import get_plugin_manager
from stepup_core.store import open_store
from stepup_core.store.sqlite import LATEST_VERSION, MIGRATIONS, SQLiteStore, open_sqlite_store
from stepup_core.testing.stores import StoreConformanceSuite, StoreScanSuite


class TestSQLiteFileStore(StoreConformanceSuite, StoreScanSuite):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = await open_sqlite_store(f"sqlite:{tmp_path / 'stepup.sqlite3'}", SystemClock())
        yield store
        await store.close()

class TestSQLiteMemoryStore(StoreConformanceSuite, StoreScanSuite):
    @pytest.fixture
    async def store(self) -> AsyncIterator[SQLiteStore]:
        store = await open_sqlite_store("sqlite::memory:", SystemClock())
        yield store
        await store.close()


# ------------------------------------------------------------------------------------------
# durability
# ------------------------------------------------------------------------------------------


async def test_a_restart_loses_nothing(tmp_path: Path) -> None:
    clock = ManualClock()
    url = f"sqlite:{tmp_path / 'stepup.sqlite3'}"
    store = await open_sqlite_store(url, clock)
    await store.put("grant:1", "g1", ttl=600, indexes=["session:a", "user:u"])
    await store.put("grant:2", "g2", ttl=60, indexes=["session:a", "user:u"])
    await store.put("credential:1", "secret data", indexes=["user:u"])
    assert await store.add("totp:step", "used", ttl=30) is True
    assert await store.incr("failures", ttl=900, amount=3) == 3
    assert await store.compare_and_set("sign-count", None, "7") is True
    await store.close()

    reopened = await open_sqlite_store(url, clock)
    try:
        assert await reopened.get("grant:1") == "g1"
        assert await reopened.list_index("session:a") == {"grant:1": "g1", "grant:2": "g2"}
        assert await reopened.list_index("user:u") == {"grant:1": "g1", "grant:2": "g2", "credential:1": "secret data"}
        assert await reopened.add("totp:step", "replayed", ttl=30) is False
        assert await reopened.incr("failures", ttl=900) == 4
        assert await reopened.get("sign-count") == "7"
        # The TTLs survived too: each record still expires when it was meant to.
        clock.advance(59)
        assert await reopened.get("grant:2") == "g2"
        clock.advance(1)
        assert await reopened.get("grant:2") is None
        assert await reopened.list_index("session:a") == {"grant:1": "g1"}
        assert await reopened.add("totp:step", "fresh", ttl=30) is True
        clock.advance(540)
        assert await reopened.get("grant:1") is None
        assert await reopened.get("credential:1") == "secret data"
    finally:
        await reopened.close()


def test_committed_writes_survive_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite3"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from stepup_core.clock import SystemClock
        from stepup_core.store.sqlite import open_sqlite_store

        async def main():
            store = await open_sqlite_store({f"sqlite:{db}"!r}, SystemClock())
            for i in range(20):
                await store.put(f"k{{i}}", f"v{{i}}", indexes=["all"])
            await store.incr("counter", ttl=3600, amount=20)
            os._exit(0)  # no close, no checkpoint: as if the process were killed

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    async def read_back() -> None:
        store = await open_sqlite_store(f"sqlite:{db}", SystemClock())
        try:
            assert await store.list_index("all") == {f"k{i}": f"v{i}" for i in range(20)}
            assert await store.get("counter") == "20"
        finally:
            await store.close()

    asyncio.run(read_back())


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    store = await open_sqlite_store(f"sqlite:{path}", SystemClock())
    try:
        assert await store.journal_mode() == "wal"
        await store.put("k", "v")
        assert (tmp_path / "wal.sqlite3-wal").exists()
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            # Another connection reads committed data while the store holds its connection open.
            assert other.execute("SELECT value FROM records WHERE key = 'k'").fetchone()[0] == "v"
    finally:
        await store.close()


async def test_two_stores_on_one_file_stay_atomic(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'shared.sqlite3'}"
    first = await open_sqlite_store(url, SystemClock())
    second = await open_sqlite_store(url, SystemClock())
    try:
        await first.put("token", "grant", ttl=600)
        results = await asyncio.gather(*((first if i % 2 else second).take("token") for i in range(100)))
        assert results.count("grant") == 1
        counts = await asyncio.gather(*((first if i % 2 else second).incr("c", ttl=600) for i in range(200)))
        assert sorted(counts) == list(range(1, 201))
        assert await second.get("c") == "200"
        adds = await asyncio.gather(*((first if i % 2 else second).add("n", str(i), ttl=60) for i in range(50)))
        assert adds.count(True) == 1
    finally:
        await first.close()
        await second.close()


async def test_expired_rows_are_swept_from_the_file(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "sweep.sqlite3"
    store = await open_sqlite_store(f"sqlite:{path}", clock)
    try:
        for i in range(10):
            await store.put(f"old{i}", "x", ttl=5, indexes=["idx"])
        await store.put("keep", "y", indexes=["idx"])
        clock.advance(store.sweep_interval + 1)
        assert await store.get("old0") is None  # reads never write
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 11
        await store.put("new", "z")  # the next write starts a sweep, in the background
        await store.sweep_finished()
        with sqlite3.connect(path) as other:
            assert {r[0] for r in other.execute("SELECT key FROM records")} == {"keep", "new"}
            assert other.execute("SELECT key FROM record_indexes").fetchall() == [("keep",)]
    finally:
        await store.close()


async def test_a_sweep_runs_in_batches_and_writes_do_not_wait_for_all_of_it(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "batches.sqlite3"
    store = await open_sqlite_store(f"sqlite:{path}", clock)
    store.sweep_batch = 100
    expired = 5000
    try:
        await store.put("warm", "w")  # the first write's (empty) sweep
        await store.sweep_finished()
        with sqlite3.connect(path) as other:
            other.executemany(
                "INSERT INTO records (key, value, expires_at) VALUES (?, 'x', ?)",
                [(f"old{i}", clock.now() + 5) for i in range(expired)],
            )
            other.executemany(
                "INSERT INTO record_indexes (index_name, key) VALUES ('idx', ?)", [(f"old{i}",) for i in range(expired)]
            )
        clock.advance(store.sweep_interval + 1)
        await store.put("trigger", "t")  # starts the sweep
        await store.put("during", "d")  # queued behind at most one batch, not the whole sweep
        with sqlite3.connect(path) as other:
            left = other.execute("SELECT COUNT(*) FROM records WHERE key LIKE 'old%'").fetchone()[0]
        assert left >= expired - 2 * store.sweep_batch
        assert await store.get("during") == "d"
        await store.sweep_finished()
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT COUNT(*) FROM records WHERE key LIKE 'old%'").fetchone()[0] == 0
            assert other.execute("SELECT COUNT(*) FROM record_indexes").fetchone()[0] == 0
        assert await store.sweep() == 0
    finally:
        await store.close()


async def test_the_write_ahead_log_is_checkpointed_off_the_write_path(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.sqlite3"
    wal = tmp_path / "checkpoint.sqlite3-wal"
    store = await open_sqlite_store(f"sqlite:{path}", SystemClock())
    value = "v" * 4000
    try:
        for round_no in range(6):  # each round adds some 1.6 MB to the log: about 10 MB in all
            for i in range(100):
                await store.put(f"k{round_no}-{i}", value, indexes=["all"])
            await asyncio.sleep(0.6)  # the checkpointing thread copies the log back meanwhile
        # The writer never checkpoints (its automatic checkpoint is off), so without the
        # checkpointing thread the log would hold all of it; checkpointed, it is reused.
        assert wal.stat().st_size < 5_000_000
        assert len(await store.list_index("all")) == 600
    finally:
        await store.close()


def _fill_expired(path: Path | str, count: int, expires_at: float) -> None:
    """``count`` records expiring at ``expires_at``, each in two indexes, written straight into
    the file (keys in hash order, values the size of a grant, as stored tokens are)."""
    rows = [(hashlib.sha256(str(i).encode()).hexdigest(), "g" * 300) for i in range(count)]
    with sqlite3.connect(path) as other:
        other.executemany(
            "INSERT INTO records (key, value, expires_at) VALUES (?, ?, ?)", [(k, v, expires_at) for k, v in rows]
        )
        other.executemany(
            "INSERT INTO record_indexes (index_name, key) VALUES (?, ?)",
            [(f"{name}:{i % 97}", k) for i, (k, _) in enumerate(rows) for name in ("session", "user")],
        )
        other.commit()
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def test_a_sweep_transaction_stops_at_its_row_limit_or_its_time_limit(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "limits.sqlite3"
    store = await open_sqlite_store(f"sqlite:{path}", clock)
    writer = store._writer
    assert writer is not None
    await store.put("warm", "w")
    await store.sweep_finished()
    removed_per_transaction: list[int] = []
    submit = writer.submit

    def recording_submit(operation, **kwargs):  # type: ignore[no-untyped-def]
        future = submit(operation, **kwargs)
        if kwargs.get("background"):
            future.add_done_callback(lambda f: removed_per_transaction.append(f.result()))
        return future

    writer.submit = recording_submit  # type: ignore[method-assign]
    try:
        _fill_expired(path, 400, clock.now() + 5)
        clock.advance(10)
        store.sweep_batch = 100
        assert await store.sweep() == 400
        assert removed_per_transaction == [100, 100, 100, 100, 0]

        _fill_expired(path, 400, clock.now() + 5)
        clock.advance(10)
        removed_per_transaction.clear()
        store.sweep_batch, store.sweep_batch_seconds = 10_000, 0.0  # time is up after 8 rows
        assert await store.sweep() == 400
        assert removed_per_transaction == [8] * 50 + [0]
    finally:
        writer.submit = submit  # type: ignore[method-assign]
        await store.close()


async def test_a_sweep_transaction_finds_and_deletes_rows_through_indexes_not_scans(tmp_path: Path) -> None:
    from stepup_core.store.sqlite_ops import _SELECT_EXPIRED

    path = tmp_path / "plan.sqlite3"
    store = await open_sqlite_store(f"sqlite:{path}", SystemClock())
    await store.close()
    plans = {}
    with sqlite3.connect(path) as conn:
        for sql, params in (
            (_SELECT_EXPIRED, (0.0, 100)),
            ("DELETE FROM record_indexes WHERE key = ?", ("k",)),
            ("DELETE FROM records WHERE key = ?", ("k",)),
        ):
            plans[sql.split()[0] + " " + sql.split("FROM ")[1].split()[0]] = " ".join(
                str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            )
    # Finding the oldest expired rows reads the expiry index in order: no scan, no sort.
    assert "USING INDEX records_expires_at" in plans["SELECT records"], plans
    assert "TEMP B-TREE" not in plans["SELECT records"], plans
    assert "USING COVERING INDEX record_indexes_key" in plans["DELETE record_indexes"], plans
    assert "USING INDEX sqlite_autoindex_records_1" in plans["DELETE records"], plans
    assert not any(plan.startswith("SCAN") for plan in plans.values()), plans


async def test_a_write_waiting_for_the_writer_goes_before_the_next_sweep_transaction(tmp_path: Path) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'priority.sqlite3'}", SystemClock())
    writer = store._writer
    assert writer is not None
    await store.put("warm", "w")
    await store.sweep_finished()
    store._next_sweep = float("inf")
    running = threading.Event()
    release = threading.Event()

    def hold(conn: sqlite3.Connection) -> int:  # background work the writer is busy with
        running.set()
        release.wait(10)
        return 0

    def next_sweep_transaction(conn: sqlite3.Connection) -> int:  # queued before the write
        return int(conn.execute("SELECT COUNT(*) FROM records WHERE key = 'request'").fetchone()[0])

    try:
        held = writer.submit(hold, background=True)
        assert await asyncio.to_thread(running.wait, 10)
        queued = writer.submit(next_sweep_transaction, background=True)
        write = asyncio.ensure_future(store.put("request", "r"))
        await asyncio.sleep(0.05)
        assert not write.done()  # a transaction in progress is not interrupted
        release.set()
        await write
        assert await held == 0
        assert await queued == 1  # the write committed before the queued sweep work ran
    finally:
        release.set()
        await store.close()


async def test_between_its_transactions_the_sweep_lets_the_log_be_copied_back_and_reused(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "sweep-log.sqlite3"
    wal = tmp_path / "sweep-log.sqlite3-wal"
    store = await open_sqlite_store(f"sqlite:{path}", clock)
    assert store._writer is not None
    store._writer.restart_frames = 10**9  # only the sweep's own pauses let the log be reused
    try:
        await store.put("warm", "w")
        await store.sweep_finished()
        _fill_expired(path, 4000, clock.now() + 5)
        assert wal.stat().st_size == 0
        clock.advance(10)
        store.sweep_batch = 50
        assert await store.sweep() == 4000
        # 80 transactions of 50 rows each wrote some 60 pages of 4 KiB each (about 20 MB in
        # all); each began with the log copied back, so each wrote it from its start again.
        assert wal.stat().st_size < 1_000_000
    finally:
        await store.close()


async def test_the_log_is_reused_while_writes_follow_each_other_without_a_pause(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "busy-log.sqlite3"
    wal = tmp_path / "busy-log.sqlite3-wal"
    store = await open_sqlite_store(f"sqlite:{path}", clock)
    writer = store._writer
    assert writer is not None
    try:
        await store.put("warm", "w")
        await store.sweep_finished()
        _fill_expired(path, 4000, clock.now() + 5)
        clock.advance(10)
        store.sweep_batch = 50
        writes = 0

        async def write_meanwhile() -> None:  # the next write queued as soon as one is answered
            nonlocal writes
            while not sweeping.done():
                await store.put(f"live{writes}", "v", indexes=["live"])
                writes += 1

        sweeping = asyncio.ensure_future(store.sweep())
        await asyncio.gather(sweeping, write_meanwhile())
        assert sweeping.result() == 4000
        # No transaction of the writer's ever begins with the whole log copied back by the
        # checkpointing thread (the next write is always waiting): the writer finishes a
        # checkpoint itself once the log holds restart_frames pages, and the log is reused.
        assert wal.stat().st_size < 2 * writer.restart_frames * 4096
        assert len(await store.list_index("live")) == writes
    finally:
        await store.close()


def test_writes_made_while_the_log_is_reused_survive_a_crash_and_other_connections_see_them(tmp_path: Path) -> None:
    db = tmp_path / "reuse.sqlite3"
    script = textwrap.dedent(
        f"""
        import asyncio, os, sqlite3, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from stepup_core.clock import ManualClock
        from stepup_core.store.sqlite import SQLiteStore
        from test_store_sqlite import _fill_expired

        async def main():
            clock = ManualClock()
            store = await SQLiteStore.open({str(db)!r}, clock)
            await store.put("warm", "w")
            await store.sweep_finished()
            _fill_expired({str(db)!r}, 3000, clock.now() + 5)
            clock.advance(10)
            store.sweep_batch = 50
            sweeping = asyncio.ensure_future(store.sweep())
            other = sqlite3.connect({str(db)!r})
            i = left = 0
            while i < 150 or (left > 1000 and i < 5000):  # until the sweep is well under way
                await store.put(f"live{{i}}", f"v{{i}}", indexes=["live"])
                seen = other.execute("SELECT value FROM records WHERE key = ?", (f"live{{i}}",)).fetchone()
                assert seen == (f"v{{i}}",), (i, seen)
                left = other.execute("SELECT COUNT(*) FROM records WHERE expires_at IS NOT NULL").fetchone()[0]
                i += 1
            print(i, left, os.path.getsize({str(db) + "-wal"!r}), store._writer.restart_frames, flush=True)
            os._exit(0)  # mid-sweep, no close, no checkpoint: as if the process were killed

        asyncio.run(main())
        """
    )
    run = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    writes, left, wal_size, restart_frames = map(int, run.stdout.split())
    assert left <= 1000  # the sweep had removed 2000 rows, writing well over 8 MB of log
    assert wal_size < 2 * restart_frames * 4096  # the log had been reused meanwhile

    async def read_back() -> None:
        store = await SQLiteStore.open(str(db), ManualClock())
        try:
            assert await store.list_index("live") == {f"live{i}": f"v{i}" for i in range(writes)}
            assert await store._call(_integrity_check, "be checked", in_transaction=False) == "ok"
        finally:
            await store.close()

    asyncio.run(read_back())


def _integrity_check(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_commits_are_synced_and_a_grown_log_is_cut_back(tmp_path: Path) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'pragmas.sqlite3'}", SystemClock())

    def pragmas(conn: sqlite3.Connection) -> list[int]:
        names = ("synchronous", "journal_size_limit", "wal_autocheckpoint")
        return [int(conn.execute(f"PRAGMA {name}").fetchone()[0]) for name in names]

    try:
        # FULL (2): a commit is on disk before its callers hear of it; the log is checkpointed
        # by its own thread, never inside a commit; once reused it is cut back to 64 MiB.
        assert await store._call(pragmas, "be read", in_transaction=False) == [2, 64 * 1024 * 1024, 0]
    finally:
        await store.close()


async def test_waiters_that_give_up_on_a_checkpoint_leave_the_checkpointing_thread_working(
    tmp_path: Path,
) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'cancel.sqlite3'}", SystemClock())
    checkpointer = store._checkpointer
    assert checkpointer is not None
    try:
        await store.put("k", "v")
        for _ in range(50):  # waiters that give up, some before the thread answers them
            waiting = asyncio.ensure_future(asyncio.wrap_future(checkpointer.request()))
            await asyncio.sleep(0)
            waiting.cancel()
        await store.put("k2", "v")
        busy, frames, copied = await asyncio.wait_for(asyncio.wrap_future(checkpointer.request()), 10)
        assert (busy, frames) == (0, copied)
    finally:
        await store.close()


async def test_each_operation_is_at_most_one_hop_to_the_writer_and_reads_none(tmp_path: Path) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'hops.sqlite3'}", SystemClock())
    writer = store._writer
    assert writer is not None
    await store.put("warm", "w")
    await store.sweep_finished()
    store._next_sweep = float("inf")  # keep background sweeps out of the count
    hops: list[str] = []
    submit = writer.submit

    def counting_submit(operation, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(operation, "func", operation).__name__)
        return submit(operation, **kwargs)

    writer.submit = counting_submit  # type: ignore[method-assign]
    try:
        operations = {
            "put": lambda: store.put("k", "v", ttl=60, indexes=["a", "b"]),
            "get": lambda: store.get("k"),
            "list_index": lambda: store.list_index("a"),
            "add": lambda: store.add("n", "1", ttl=60, indexes=["a"]),
            "incr": lambda: store.incr("c", ttl=60),
            "compare_and_set": lambda: store.compare_and_set("n", "1", "2", ttl=60),
            "take": lambda: store.take("n"),
            "delete": lambda: store.delete("k"),
        }
        for name, call in operations.items():
            hops.clear()
            await call()
            assert len(hops) == (0 if name in ("get", "list_index") else 1), (name, hops)
    finally:
        writer.submit = submit  # type: ignore[method-assign]
        await store.close()


async def test_operations_that_commit_together_fail_alone(tmp_path: Path) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'group.sqlite3'}", SystemClock())
    try:
        await store.put("text", "not a number")
        results = await asyncio.gather(
            *(store.put(f"k{i}", str(i), indexes=["all"]) for i in range(20)),
            store.incr("text", ttl=60),
            *(store.incr("counter", ttl=60) for _ in range(20)),
            return_exceptions=True,
        )
        assert isinstance(results[20], ValueError)
        assert [r for i, r in enumerate(results) if i != 20 and isinstance(r, BaseException)] == []
        assert sorted(r for r in results[21:] if isinstance(r, int)) == list(range(1, 21))
        assert await store.get("text") == "not a number"
        assert len(await store.list_index("all")) == 20
    finally:
        await store.close()


async def test_a_closed_store_answers_queued_callers_and_refuses_new_ones(tmp_path: Path) -> None:
    store = await open_sqlite_store(f"sqlite:{tmp_path / 'closing.sqlite3'}", SystemClock())
    pending = [asyncio.ensure_future(store.put(f"k{i}", "v")) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    for task in pending:  # each queued write either committed or was refused, none hangs
        with contextlib.suppress(StoreUnavailable):
            await asyncio.wait_for(task, 10)
    with pytest.raises(StoreUnavailable):
        await store.put("late", "v")


# ------------------------------------------------------------------------------------------
# failures
# ------------------------------------------------------------------------------------------


async def test_a_path_under_a_regular_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file")
    with pytest.raises(StoreUnavailable) as info:
        await open_sqlite_store(f"sqlite:{blocker / 'stepup.sqlite3'}", SystemClock())
    assert str(blocker) in str(info.value)
    assert info.value.code == "store_unavailable"


async def test_a_directory_as_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="could not be opened"):
        await open_sqlite_store(f"sqlite:{tmp_path}", SystemClock())


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    with pytest.raises(StoreUnavailable, match=r"garbage\.sqlite3"):
        await open_sqlite_store(f"sqlite:{path}", SystemClock())


@pytest.mark.parametrize("url", ["sqlite:", "sqlite://", "sqlite://somehost/path.db"])
async def test_malformed_sqlite_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        await open_sqlite_store(url, SystemClock())


# ------------------------------------------------------------------------------------------
# opening by URL through the plugin manager
# ------------------------------------------------------------------------------------------


async def test_open_store_by_absolute_url(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    path = tmp_path / "abs" / "stepup.sqlite3"
    store = await open_store(f"sqlite://{path}", pm, ManualClock())
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == str(path)
        await store.put("k", "v")
        assert path.exists()
    finally:
        await store.close()


async def test_open_store_by_relative_url_creates_missing_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pm = get_plugin_manager(load_entrypoints=False)
    store = await open_store("sqlite:data/nested/stepup.sqlite3", pm)
    try:
        await store.put("k", "v")
        assert await store.get("k") == "v"
        assert (tmp_path / "data" / "nested" / "stepup.sqlite3").is_file()
    finally:
        await store.close()


async def test_open_store_in_memory_url() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    store = await open_store("sqlite::memory:", pm)
    try:
        assert isinstance(store, SQLiteStore)
        await store.put("k", "v")
        assert await store.get("k") == "v"
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/0"])
async def test_redis_url_without_the_plugin_names_the_package(url: str) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    with pytest.raises(ConfigError, match=r"pip install \./plugins/stepup-redis") as info:
        await open_store(url, pm)
    assert "sqlite" in str(info.value)


async def test_unknown_scheme_lists_installed_schemes() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    with pytest.raises(ConfigError) as info:
        await open_store("postgres://db/stepup", pm)
    message = str(info.value)
    assert "'postgres'" in message
    assert "memory" in message and "sqlite" in message
    assert "pip install" not in message


# --- schema versions ---------------------------------------------------------------------------

_VERSION_1_SCHEMA = """
CREATE TABLE records (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL);
CREATE INDEX records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE record_indexes (index_name TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (index_name, key)) WITHOUT ROWID;
CREATE INDEX record_indexes_key ON record_indexes (key);
INSERT INTO records VALUES ('cred:alice:c1', 'kept', NULL);
INSERT INTO record_indexes VALUES ('creds:alice', 'cred:alice:c1');
PRAGMA user_version = 1;
"""


async def test_a_new_database_records_every_migration(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "new.db"))
    try:
        assert store.version_at_open == 0
        assert [m.version for m in store.applied_at_open] == [m.version for m in MIGRATIONS]
        assert await store.schema_version() == LATEST_VERSION
        assert await store.migrate() == []
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "new.db") as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]


async def test_a_version_1_database_is_migrated_forward_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_VERSION_1_SCHEMA)
    store = await SQLiteStore.open(str(path))
    try:
        assert store.version_at_open == 1
        assert [m.version for m in store.applied_at_open] == [2]
        assert await store.get("cred:alice:c1") == "kept"
        assert await store.list_index("creds:alice") == {"cred:alice:c1": "kept"}
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        rows = conn.execute("SELECT version, description FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [1, 2]


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StoreUnavailable, match="newer than this stepup understands"):
        await SQLiteStore.open(str(path))


def test_the_operations_guide_states_the_sweep_and_log_limits_the_store_uses() -> None:
    from stepup_core.store.sqlite_ops import JOURNAL_SIZE_LIMIT
    from stepup_core.store.sqlite_writer import _Writer

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text().split())
    milliseconds = SQLiteStore.sweep_batch_seconds * 1000
    assert f"at most {SQLiteStore.sweep_batch} rows and stops deleting after {milliseconds:g} ms" in text
    assert f"once the log holds {_Writer.restart_frames} pages ({_Writer.restart_frames * 4 // 1024} MiB)" in text
    assert f"more than {SQLiteStore.sweep_log_frames} pages ({SQLiteStore.sweep_log_frames * 4 // 1024} MiB)" in text
    assert f"past {JOURNAL_SIZE_LIMIT // 2**20} MiB" in text
    assert SQLiteStore.sweep_rest == 1.0 and "rests as long again" in text
