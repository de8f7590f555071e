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
connection, so a commit never waits for a checkpoint. SQLite writes the log from its start again
only when a write transaction begins with all of it copied back: the sweep waits for a checkpoint
between its transactions, and when writes follow each other without a pause the writer finishes
a checkpoint itself, its callers answered, once the log holds ``restart_frames`` pages (see
:mod:`stepup_core.store.sqlite_writer`), so the log stays small instead of growing.

Expiry follows the injected clock: a row carries ``expires_at`` (seconds since the epoch) and a
row whose ``expires_at`` is not after ``clock.now()`` is never returned. Expired rows are swept
in the background, at most once per :attr:`SQLiteStore.sweep_interval` seconds (started by a
write), in transactions of at most :attr:`SQLiteStore.sweep_batch` rows that run only when no
other operation is waiting, each followed by a checkpoint and a rest, so no request waits behind
more than one small transaction however much has expired, and the disk is left to requests at
least half the time. A key written again replaces its expired row at once.

URLs: ``sqlite:relative/path.db``, ``sqlite:///absolute/path.db``, ``sqlite::memory:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ..clock import Clock, SystemClock
from ..errors import ConfigError, StoreUnavailable
from .base import Counter, Reservation, Write
from .migrations import Migration
from .sqlite_ops import (
    _LIST_INDEX,
    _SCAN,
    _SELECT_LIVE,
    LATEST_VERSION,
    MIGRATIONS,
    _add,
    _apply_migrations,
    _automatic_checkpoints,
    _compare_and_set,
    _CounterError,
    _delete,
    _get,
    _incr,
    _initialise,
    _journal_mode,
    _list_index,
    _put,
    _reserve,
    _select_one,
    _select_rows,
    _settle,
    _sweep_batch,
    _take,
    _unavailable,
    _user_version_rows,
)
from .sqlite_writer import Operation, _Checkpointer, _Writer, _WriterStopped

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SQLiteStore", "open_sqlite_store", "sqlite_path_from_url"]

log = logging.getLogger("stepup.sqlite")


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


class SQLiteStore:
    """A :class:`~stepup_core.store.base.Store` on one SQLite database. Open with :meth:`open`."""

    #: Seconds between background sweeps of expired rows (by the injected clock).
    sweep_interval: float = 60.0
    #: Expired rows removed per sweep transaction at most: small enough that an operation queued
    #: behind one waits a few milliseconds, whatever has expired.
    sweep_batch: int = 100
    #: Seconds one sweep transaction may spend deleting (checked every 8 rows).
    sweep_batch_seconds: float = 0.005
    #: Checkpoints the sweep waits for between two of its transactions (unless the log holds
    #: more than :attr:`sweep_log_frames` frames not copied back).
    sweep_checkpoints: int = 4
    #: Frames (pages) of the write-ahead log not yet copied back that the sweep tolerates
    #: before its next transaction: 1024 frames, 4 MiB with the default page size.
    sweep_log_frames: int = 1024
    #: Seconds the sweep waits before asking again for a checkpoint a reader holds back.
    sweep_wait: float = 0.05
    #: After each transaction and its checkpoint, the sweep rests this many times as long as
    #: they took (1.0: it keeps the writer and the disk busy half the time at most).
    sweep_rest: float = 1.0

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

    async def _call(
        self, operation: Operation, action: str, *, in_transaction: bool = True, background: bool = False
    ) -> Any:
        """Run ``operation`` on the writer thread (one hop) and return its result; a
        ``background`` one runs only when no other operation is waiting."""
        future = self._writer_or_raise().submit(operation, in_transaction=in_transaction, background=background)
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
        """Remove every row expired by now; the number removed.

        Each transaction removes at most :attr:`sweep_batch` rows and deletes for at most
        :attr:`sweep_batch_seconds`; it runs only when no other operation is waiting, and the
        next one only once the write-ahead log has been copied back into the database and
        :attr:`sweep_rest` times as long again has passed."""
        removed = 0
        while True:
            began = time.monotonic()
            count = int(
                await self._call(
                    functools.partial(_sweep_batch, self.clock.now(), self.sweep_batch, self.sweep_batch_seconds),
                    "sweep expired records",
                    background=True,
                )
            )
            removed += count
            if count == 0 or not await self._log_copied_back():
                return removed
            # Leave the disk to requests for a while: what a commit waits for when it syncs is
            # whatever the disk was already given to write, the sweep's pages included.
            await asyncio.sleep((time.monotonic() - began) * self.sweep_rest)

    async def _log_copied_back(self) -> bool:
        """Between two sweep transactions: let the checkpointing thread copy the write-ahead log
        back into the database until a checkpoint finds nothing new (at most
        :attr:`sweep_checkpoints` of them); False when the sweep should stop for now.

        Without this pause the writer would begin each transaction while the log still held
        the last one, and SQLite reuses the log from its start only when a write transaction
        begins with all of it copied back: the log would grow by every transaction of the
        sweep (gigabytes for a million rows), and the database pages copied back but not yet
        synced would pile up in the operating system's cache until it wrote them out in
        bursts that every commit waits behind.

        When a reader holds an older snapshot (a backup, a long scan) the log cannot be
        copied back past it: the sweep then waits while more than :attr:`sweep_log_frames`
        frames are not copied back, for :attr:`sweep_interval` seconds at most, and stops
        after that (the next sweep goes on), so it never grows the log without bound."""
        checkpointer = self._checkpointer
        if checkpointer is None:  # an in-memory database has no log
            await asyncio.sleep(0)
            return True
        previous_frames = previous_copied = -1
        passes = 0
        give_up = time.monotonic() + self.sweep_interval
        while True:
            try:
                busy, frames, copied = await asyncio.wait_for(asyncio.wrap_future(checkpointer.request()), 10.0)
            except asyncio.TimeoutError:  # pragma: no cover - a stuck disk: stop, the next sweep goes on
                return False
            if frames == copied == previous_frames:
                return True  # nothing new since the last checkpoint, which copied it all
            passes += 1
            behind = frames - copied if frames >= 0 else self.sweep_log_frames + 1
            progress = copied > previous_copied and not busy
            if behind <= self.sweep_log_frames and (passes >= self.sweep_checkpoints or not progress):
                return True
            if not progress:  # a reader's snapshot (or another checkpoint) holds it back
                if time.monotonic() >= give_up:
                    log.info("sweep paused: the write-ahead log cannot be copied back past a reader")
                    return False
                await asyncio.sleep(self.sweep_wait)
            previous_frames, previous_copied = frames, copied

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


async def open_sqlite_store(url: str, clock: Clock, **_: Any) -> SQLiteStore:
    """Open the store a ``sqlite:`` URL names (the ``sqlite`` scheme's factory)."""
    return await SQLiteStore.open(sqlite_path_from_url(url), clock)
