"""The SQLite store: conformance, durability across restarts, WAL, failures, opening by URL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import textwrap
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
