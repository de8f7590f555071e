"""The embedded default store: one SQLite file in WAL mode.

Writes go through one connection owned by one writer thread. Each store operation is one
Python function that the thread runs whole, so an operation costs one hop to the thread however
many statements it needs. Operations that queue up while the thread is busy (typically while it
waits for the disk) run together in one ``BEGIN IMMEDIATE`` transaction, each inside its own
savepoint (group commit): a failing operation rolls back only its own savepoint, and no caller
hears of its write before the ``COMMIT`` that makes it durable has returned. ``BEGIN
IMMEDIATE`` keeps every read-modify-write atomic against other processes sharing the file too.

Reads (``get``, ``list_index``) on a file database use a second, read-only connection on the
event loop's own thread: a primary-key lookup in WAL mode takes microseconds, less than any
hop to a thread, and sees only committed data (when SQLite says busy the read goes to the
writer thread instead, which waits). A read is a single ``SELECT``: validating a time-bound token
costs one query and no write.

Durability: ``PRAGMA synchronous = FULL``, so a committed transaction is on disk before its
callers are answered; neither a restart nor a power cut loses a credential or an issued grant.
The write-ahead log is copied back into the database by a checkpointing thread with its own
connection, so a commit never waits for a checkpoint.

Expiry follows the injected clock: a row carries ``expires_at`` (seconds since the epoch) and a
row whose ``expires_at`` is not after ``clock.now()`` is never returned. Expired rows are swept
in the background, at most once per :attr:`SQLiteStore.sweep_interval` seconds (started by a
write), in transactions of at most :attr:`SQLiteStore.sweep_batch` rows queued like any other
operation, so no request waits behind more than one batch however much has expired. A key
written again replaces its expired row at once.

URLs: ``sqlite:relative/path.db``, ``sqlite:///absolute/path.db``, ``sqlite::memory:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..clock import Clock, SystemClock
from ..errors import ConfigError, StoreUnavailable
from .base import Counter, Reservation, Write
from .migrations import Migration

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SQLiteStore", "open_sqlite_store", "sqlite_path_from_url"]

log = logging.getLogger("stepup.sqlite")

T = TypeVar("T")
#: A store operation as the writer thread runs it: a function of the writing connection.
Operation = Callable[[sqlite3.Connection], Any]

#: The schema as forward migrations. Version 1 is the original layout, whose version lived only in
#: ``PRAGMA user_version``; version 2 adds the ``schema_version`` table recording every
#: migration (an existing version-1 database gets it, with a row for version 1, and keeps its data).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records with expiry; index memberships",
        """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS records_expires_at ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS record_indexes (
    index_name TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (index_name, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_indexes_key ON record_indexes (key);
""",
    ),
    Migration(
        2,
        "the schema_version table",
        """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL
);
""",
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version

_SELECT_LIVE = "SELECT value FROM records WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_LIST_INDEX = (
    "SELECT r.key, r.value FROM record_indexes AS i JOIN records AS r ON r.key = i.key "
    "WHERE i.index_name = ? AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY r.key"
)
_SCAN = (
    "SELECT key, value FROM records WHERE key >= ? AND key < ? AND key > ? "
    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?"
)
_SELECT_EXPIRED = (
    "SELECT key FROM records WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?"
)


def sqlite_path_from_url(url: str) -> str:
    """The database path a ``sqlite:`` URL names (``:memory:`` for an in-memory database).

    ``sqlite:relative/path.db`` is relative to the working directory, ``sqlite:///abs/path.db``
    (or ``sqlite:/abs/path.db``) is absolute, ``sqlite::memory:`` is a private in-memory database.
    """
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() != "sqlite":
        raise ConfigError(f"not a sqlite store URL: {url!r}; expected sqlite:PATH")
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ConfigError(
                f"sqlite store URL {url!r} names a host; use sqlite:relative/path.db or sqlite:///absolute/path.db"
            )
    if not rest:
        raise ConfigError(f"sqlite store URL {url!r} has no path; use sqlite:stepup.sqlite3 or sqlite::memory:")
    return rest


def _unavailable(path: str, action: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"SQLite store {path!r} could not {action}: {exc}", path=path)


# --- the writer thread ------------------------------------------------------------------------


class _Job:
    __slots__ = ("future", "in_transaction", "operation")

    def __init__(self, operation: Operation, future: asyncio.Future[Any], in_transaction: bool) -> None:
        self.operation = operation
        self.future = future
        self.in_transaction = in_transaction


class _WriterStopped(Exception):
    """The writer thread is gone: its connection can no longer be used."""


def _deliver(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand each caller its operation's result (or error)."""
    for future, ok, value in outcomes:
        if future.done():  # the caller was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Writer:
    """The thread that owns the writing connection and runs operations in group commits."""

    #: Operations joined into one transaction at most.
    max_group = 200

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        #: Told after each commit when the database has a write-ahead log (a file database).
        self.checkpointer: _Checkpointer | None = None
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stepup-sqlite-writer {path}", daemon=True)
        self._thread.start()

    def submit(self, operation: Operation, *, in_transaction: bool = True) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.stopped.is_set():
            future.set_exception(_WriterStopped("the store's writer has stopped"))
        else:
            self.queue.put(_Job(operation, future, in_transaction))
        return future

    def stop(self) -> None:
        self.queue.put(None)

    async def wait_stopped(self) -> None:
        await asyncio.to_thread(self._thread.join)

    # -- on the thread --------------------------------------------------------------------

    def _run(self) -> None:
        carried: _Job | None = None
        has_carried = False
        try:
            while True:
                if has_carried:
                    job, has_carried = carried, False
                else:
                    job = self.queue.get()
                if job is None:
                    return
                if not job.in_transaction:
                    self._send([self._run_alone(job)])
                    continue
                group = [job]
                while len(group) < self.max_group:
                    try:
                        following = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if following is None or not following.in_transaction:
                        carried, has_carried = following, True  # next, after this group
                        break
                    group.append(following)
                self._send(self._run_group(group))
                if self.checkpointer is not None:
                    self.checkpointer.committed()
        finally:
            self.stopped.set()
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self._fail_pending()

    def _run_alone(self, job: _Job) -> tuple[asyncio.Future[Any], bool, Any]:
        try:
            return job.future, True, job.operation(self.conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            return job.future, False, exc

    def _run_group(self, group: list[_Job]) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        conn = self.conn
        single = len(group) == 1
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            if conn.in_transaction:  # pragma: no cover - never left open, but never trusted either
                conn.rollback()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    if not single:
                        conn.execute("SAVEPOINT operation")
                    try:
                        value = job.operation(conn)
                    except Exception as exc:
                        if single:
                            raise
                        conn.execute("ROLLBACK TO operation")
                        conn.execute("RELEASE operation")
                        results.append((job.future, False, exc))
                    else:
                        if not single:
                            conn.execute("RELEASE operation")
                        results.append((job.future, True, value))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise
        except Exception as exc:  # noqa: BLE001 - nothing of the group was committed
            return [(job.future, False, exc) for job in group]
        return results

    def _send(self, outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(_deliver, items)

    def _fail_pending(self) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                outcomes.append((job.future, False, _WriterStopped("the store's writer has stopped")))
        self._send(outcomes)


class _Checkpointer:
    """Copies the write-ahead log back into the database on a thread and connection of its own
    (``PRAGMA wal_checkpoint(PASSIVE)``), at most every :attr:`interval` seconds after commits,
    so no commit waits for a checkpoint: the writer's own automatic checkpoint is off."""

    #: Seconds between checkpoints at most.
    interval = 0.25

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"stepup-sqlite-checkpoint {path}", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        try:
            while True:
                self._wanted.wait()
                if self._stopping:
                    return
                self._wanted.clear()
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the next commit asks again
                    log.warning("checkpointing the SQLite write-ahead log failed: %s", exc)
                time.sleep(self.interval)
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()


# --- operations (run on the writer thread) ----------------------------------------------------


def _live_value(conn: sqlite3.Connection, key: str, now: float) -> str | None:
    row = conn.execute(_SELECT_LIVE, (key, now)).fetchone()
    return None if row is None else str(row[0])


def _remove(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM record_indexes WHERE key = ?", (key,))
    conn.execute("DELETE FROM records WHERE key = ?", (key,))


def _write(
    conn: sqlite3.Connection, key: str, value: str, ttl: float | None, indexes: Sequence[str], now: float
) -> None:
    expires_at = None if ttl is None else now + ttl
    conn.execute("DELETE FROM record_indexes WHERE key = ?", (key,))
    conn.execute(
        "INSERT INTO records (key, value, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        (key, value, expires_at),
    )
    names = _unique(indexes)
    if names:
        conn.executemany(
            "INSERT OR IGNORE INTO record_indexes (index_name, key) VALUES (?, ?)", [(name, key) for name in names]
        )


def _put(key: str, value: str, ttl: float | None, indexes: Sequence[str], now: float, conn: sqlite3.Connection) -> None:
    _write(conn, key, value, ttl, indexes, now)


def _delete(key: str, now: float, conn: sqlite3.Connection) -> bool:
    live = _live_value(conn, key, now) is not None
    _remove(conn, key)
    return live


def _take(key: str, now: float, conn: sqlite3.Connection) -> str | None:
    value = _live_value(conn, key, now)
    if value is not None:
        _remove(conn, key)
    return value


def _add(key: str, value: str, ttl: float | None, indexes: Sequence[str], now: float, conn: sqlite3.Connection) -> bool:
    if _live_value(conn, key, now) is not None:
        return False
    _write(conn, key, value, ttl, indexes, now)
    return True


def _incr(key: str, ttl: float, amount: int, now: float, conn: sqlite3.Connection) -> int:
    current = _live_value(conn, key, now)
    if current is None:
        _write(conn, key, str(amount), ttl, (), now)
        return amount
    try:
        value = int(current) + amount
    except ValueError as exc:
        raise _CounterError(f"store record {key!r} is not a counter") from exc
    conn.execute("UPDATE records SET value = ? WHERE key = ?", (str(value), key))
    return value


def _compare_and_set(
    key: str,
    expected: str | None,
    value: str,
    ttl: float | None,
    indexes: Sequence[str],
    now: float,
    conn: sqlite3.Connection,
) -> bool:
    if _live_value(conn, key, now) != expected:
        return False
    _write(conn, key, value, ttl, indexes, now)
    return True


def _counter_value(conn: sqlite3.Connection, key: str, now: float) -> int | None:
    current = _live_value(conn, key, now)
    if current is None:
        return None
    try:
        return int(current)
    except ValueError as exc:
        raise _CounterError(f"store record {key!r} is not a counter") from exc


def _reserve(counters: Sequence[Counter], now: float, conn: sqlite3.Connection) -> Reservation:
    found = [_counter_value(conn, c.key, now) for c in counters]
    counts = tuple(0 if value is None else value for value in found)
    if any(count >= c.limit for count, c in zip(counts, counters, strict=True)):
        return Reservation(False, counts)
    for counter, value, count in zip(counters, found, counts, strict=True):
        if value is None:
            _write(conn, counter.key, "1", counter.ttl, (), now)
        else:
            conn.execute("UPDATE records SET value = ? WHERE key = ?", (str(count + 1), counter.key))
    return Reservation(True, tuple(count + 1 for count in counts))


def _settle(
    take: str | None, release: Sequence[str], writes: Sequence[Write], now: float, conn: sqlite3.Connection
) -> bool:
    if take is not None:
        if _live_value(conn, take, now) is None:
            return False
        _remove(conn, take)
    for key in release:
        value = _counter_value(conn, key, now)
        if value is None:
            continue
        if value - 1 <= 0:
            _remove(conn, key)
        else:
            conn.execute("UPDATE records SET value = ? WHERE key = ?", (str(value - 1), key))
    for write in writes:
        _write(conn, write.key, write.value, write.ttl, write.indexes, now)
    return True


def _get(key: str, now: float, conn: sqlite3.Connection) -> str | None:
    return _live_value(conn, key, now)


def _list_index(index: str, now: float, conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute(_LIST_INDEX, (index, now)).fetchall()}


def _sweep_batch(now: float, limit: int, seconds: float, conn: sqlite3.Connection) -> int:
    """Remove at most ``limit`` expired rows (oldest expiry first), stopping early once
    ``seconds`` have passed; the number removed."""
    keys = [(row[0],) for row in conn.execute(_SELECT_EXPIRED, (now, limit)).fetchall()]
    deadline = time.perf_counter() + seconds
    removed = 0
    for start in range(0, len(keys), 8):
        chunk = keys[start : start + 8]
        conn.executemany("DELETE FROM record_indexes WHERE key = ?", chunk)
        conn.executemany("DELETE FROM records WHERE key = ?", chunk)
        removed += len(chunk)
        if time.perf_counter() >= deadline:
            break
    return removed


class _CounterError(ValueError):
    """``incr`` on a record that does not hold an integer."""


class SQLiteStore:
    """A :class:`~stepup_core.store.base.Store` on one SQLite database. Open with :meth:`open`."""

    #: Seconds between background sweeps of expired rows (by the injected clock).
    sweep_interval: float = 60.0
    #: Expired rows removed per sweep transaction at most: small enough that an operation queued
    #: behind one waits a few milliseconds, whatever has expired.
    sweep_batch: int = 200
    #: Seconds one sweep transaction may spend deleting (checked every 8 rows).
    sweep_batch_seconds: float = 0.005

    def __init__(self, path: str, clock: Clock, writer: _Writer) -> None:
        self.path = path
        self.clock = clock
        self._writer: _Writer | None = writer
        self._reader: sqlite3.Connection | None = None
        self._next_sweep = float("-inf")
        self._sweeper: asyncio.Task[int] | None = None
        self._checkpointer: _Checkpointer | None = None
        #: The schema version the file had when opened (0: a new database).
        self.version_at_open: int | None = None
        #: Migrations applied when the store was opened.
        self.applied_at_open: list[Migration] = []

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str, clock: Clock | None = None) -> SQLiteStore:
        """Open (creating if needed) the database at ``path``; ``:memory:`` for a private one.

        A missing parent directory is created. Raises StoreUnavailable when the file cannot be
        opened or written.
        """
        clock = clock or SystemClock()
        if path != ":memory:":
            _ensure_parent_directory(path)
        try:
            conn = await asyncio.to_thread(_connect, path)
        except sqlite3.Error as exc:
            raise _unavailable(path, "be opened", exc) from exc
        store = cls(path, clock, _Writer(conn, path))
        try:
            await store._initialise()
        except BaseException:
            await store.close()
            raise
        if path != ":memory:":
            try:
                store._reader = _open_reader(path)
            except sqlite3.Error:  # the writer thread still serves every read
                store._reader = None
            try:
                checkpointer = await asyncio.to_thread(_Checkpointer, path)
            except sqlite3.Error:  # then the writer checkpoints as it commits, as SQLite does
                await store._call(_automatic_checkpoints, "be initialised", in_transaction=False)
            else:
                store._checkpointer = store._writer_or_raise().checkpointer = checkpointer
        return store

    async def _initialise(self) -> None:
        mode, self.version_at_open, self.applied_at_open = await self._call(
            functools.partial(_initialise, self.path), "be initialised (is the path writable?)", in_transaction=False
        )
        if self.path != ":memory:" and mode != "wal":
            raise StoreUnavailable(
                f"SQLite store {self.path!r} could not switch to WAL mode (journal mode is {mode!r})", path=self.path
            )

    async def migrate(self) -> list[Migration]:
        """Apply pending migrations (opening already did; another process may have left some)."""
        return list(await self._call(_apply_migrations, "be migrated"))

    async def schema_version(self) -> int:
        rows = self._read_here("PRAGMA user_version", ())
        if rows is None:
            rows = await self._call(_user_version_rows, "be read", in_transaction=False)
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        """Close the connections. Idempotent; later operations raise StoreUnavailable. Operations
        already queued finish first."""
        writer, self._writer = self._writer, None
        reader, self._reader = self._reader, None
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(BaseException):
                await sweeper
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()
        if writer is not None:
            writer.stop()
            await writer.wait_stopped()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)

    def _writer_or_raise(self) -> _Writer:
        if self._writer is None:
            raise StoreUnavailable(f"SQLite store {self.path!r} is closed", path=self.path)
        return self._writer

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, operation: Operation, action: str, *, in_transaction: bool = True) -> Any:
        """Run ``operation`` on the writer thread (one hop) and return its result."""
        future = self._writer_or_raise().submit(operation, in_transaction=in_transaction)
        try:
            return await future
        except _CounterError:
            raise
        except (sqlite3.Error, _WriterStopped) as exc:
            raise _unavailable(self.path, action, exc) from exc

    async def _write_op(self, operation: Operation) -> Any:
        result = await self._call(operation, "be written")
        if self.clock.now() >= self._next_sweep and self._sweeper is None:
            self._start_sweep()
        return result

    def _read_here(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """Run a read on the loop's thread with the read-only connection; None when there is
        none or SQLite is busy (the caller asks the writer thread, which waits)."""
        self._writer_or_raise()  # closed: StoreUnavailable
        reader = self._reader
        if reader is None:
            return None
        try:
            return reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return None
        except sqlite3.Error as exc:
            raise _unavailable(self.path, "be read", exc) from exc

    # -- expiry ----------------------------------------------------------------------------

    def _start_sweep(self) -> None:
        self._next_sweep = self.clock.now() + self.sweep_interval
        self._sweeper = asyncio.get_running_loop().create_task(self._background_sweep())

    async def _background_sweep(self) -> int:
        try:
            return await self.sweep()
        except StoreUnavailable as exc:
            log.warning("sweeping expired records failed: %s", exc)
            return 0
        finally:
            self._sweeper = None

    async def sweep(self) -> int:
        """Remove every row expired by now, :attr:`sweep_batch` rows per transaction, each
        queued behind the operations already waiting; the number removed."""
        removed = 0
        while True:
            count = int(
                await self._call(
                    functools.partial(_sweep_batch, self.clock.now(), self.sweep_batch, self.sweep_batch_seconds),
                    "sweep expired records",
                )
            )
            removed += count
            if count == 0:
                return removed

    async def sweep_finished(self) -> None:
        """Wait for a background sweep in progress (if any) to finish."""
        sweeper = self._sweeper
        if sweeper is not None:
            await asyncio.shield(sweeper)

    # -- the Store protocol ----------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        await self._write_op(functools.partial(_put, key, value, ttl, tuple(indexes), self.clock.now()))

    async def get(self, key: str) -> str | None:
        now = self.clock.now()
        rows = self._read_here(_SELECT_LIVE, (key, now))
        if rows is not None:
            return str(rows[0][0]) if rows else None
        return await self._call(functools.partial(_get, key, now), "be read")  # type: ignore[no-any-return]

    async def delete(self, key: str) -> bool:
        return bool(await self._write_op(functools.partial(_delete, key, self.clock.now())))

    async def take(self, key: str) -> str | None:
        return await self._write_op(functools.partial(_take, key, self.clock.now()))  # type: ignore[no-any-return]

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        return bool(await self._write_op(functools.partial(_add, key, value, ttl, tuple(indexes), self.clock.now())))

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        return int(await self._write_op(functools.partial(_incr, key, ttl, int(amount), self.clock.now())))

    async def compare_and_set(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        ttl: float | None = None,
        indexes: Sequence[str] = (),
    ) -> bool:
        operation = functools.partial(_compare_and_set, key, expected, value, ttl, tuple(indexes), self.clock.now())
        return bool(await self._write_op(operation))

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        reservation = await self._write_op(functools.partial(_reserve, tuple(counters), self.clock.now()))
        assert isinstance(reservation, Reservation)
        return reservation

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        operation = functools.partial(_settle, take, tuple(release), tuple(writes), self.clock.now())
        return bool(await self._write_op(operation))

    async def list_index(self, index: str) -> dict[str, str]:
        now = self.clock.now()
        rows = self._read_here(_LIST_INDEX, (index, now))
        if rows is not None:
            return {str(k): str(v) for k, v in rows}
        return await self._call(functools.partial(_list_index, index, now), "be read")  # type: ignore[no-any-return]

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix``, in key order, read in pages."""
        after = ""
        upper = prefix + chr(0x10FFFF)
        while True:
            params = (prefix, upper, after, self.clock.now(), batch)
            rows = self._read_here(_SCAN, params)
            if rows is None:
                rows = await self._call(functools.partial(_select_rows, _SCAN, params), "be read")
            for row in rows:
                yield str(row[0]), str(row[1])
            if len(rows) < batch:
                return
            after = str(rows[-1][0])

    async def ping(self) -> None:
        if self._read_here("SELECT 1", ()) is None:
            await self._call(_select_one, "be read", in_transaction=False)

    async def journal_mode(self) -> str:
        """The database's journal mode (``wal`` for a file database)."""
        return str(await self._call(_journal_mode, "be read", in_transaction=False))

    def __repr__(self) -> str:
        state = "closed" if self._writer is None else "open"
        return f"<SQLiteStore {self.path!r} {state}>"


def _automatic_checkpoints(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_autocheckpoint = 1000")


def _select_rows(sql: str, params: tuple[Any, ...], conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _user_version_rows(conn: sqlite3.Connection) -> list[Any]:
    return conn.execute("PRAGMA user_version").fetchall()


def _apply_migrations(conn: sqlite3.Connection) -> list[Migration]:
    """Inside a ``BEGIN IMMEDIATE`` transaction: apply what is pending (re-reading the version
    under the lock, since another process may have migrated meanwhile)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    applied: list[Migration] = []
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        for statement in _statements(migration.sql):
            conn.execute(statement)
        applied.append(migration)
    if applied:
        now = time.time()
        # Version 1 predates the table: record it too when an existing database gets it.
        history = [m for m in MIGRATIONS if m.version <= LATEST_VERSION and (m in applied or m.version == 1)]
        conn.executemany(
            "INSERT OR IGNORE INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
            [(m.version, m.description, now) for m in history],
        )
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION}")
    return applied


def _select_one(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchall()


def _journal_mode(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _initialise(path: str, conn: sqlite3.Connection) -> tuple[str, int, list[Migration]]:
    """On the writer thread, before anything else: pragmas and pending migrations. (The journal
    mode, the schema version found, the migrations applied.)"""
    conn.execute("PRAGMA busy_timeout = 5000")
    try:
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise _unavailable(path, "be read: the file is not a SQLite database", exc) from exc
        raise
    # FULL: a committed transaction is on disk before the call returns, so neither a restart
    # nor a power cut loses a credential or an issued grant.
    conn.execute("PRAGMA synchronous = FULL")
    # Checkpoints run on a connection of their own (_Checkpointer), not inside a commit.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST_VERSION:
        raise StoreUnavailable(
            f"SQLite store {path!r} has schema version {version}, newer than this "
            f"stepup understands ({LATEST_VERSION}); upgrade stepup-core",
            path=path,
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _apply_migrations(conn)
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")
    return mode, version, applied


def _connect(path: str) -> sqlite3.Connection:
    # Used only by the writer thread (created here, on a worker thread, before it starts).
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for reads on the event loop's thread. It never waits for a lock
    (``busy_timeout = 0``): when SQLite is busy the caller asks the writer thread."""
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    reader.execute("PRAGMA busy_timeout = 0")
    return reader


def _ensure_parent_directory(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise _unavailable(path, f"create its directory {parent!r}", exc) from exc


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


async def open_sqlite_store(url: str, clock: Clock, **_: Any) -> SQLiteStore:
    """Open the store a ``sqlite:`` URL names (the ``sqlite`` scheme's factory)."""
    return await SQLiteStore.open(sqlite_path_from_url(url), clock)
