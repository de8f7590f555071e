"""The embedded default store: one SQLite file in WAL mode, on aiosqlite.

The store keeps one connection. Every operation runs under one ``asyncio.Lock``, so no
operation ever sees another's uncommitted work, and every read-modify-write runs in a
``BEGIN IMMEDIATE`` transaction, so it is atomic against other processes sharing the file too.
``get`` on a file database also has a second, read-only connection that answers on the event
loop's own thread: a primary-key lookup in WAL mode takes microseconds, less than the hop to
the worker thread, and sees only committed data (it falls back to the worker when SQLite says
busy). This is what keeps a protected route's token check cheap.
A read (``get``, ``list_index``) is a single ``SELECT``: validating a time-bound token costs one
query and no write.

Expiry follows the injected clock: a row carries ``expires_at`` (seconds since the epoch) and a
row whose ``expires_at`` is not after ``clock.now()`` is never returned. Expired rows are swept
opportunistically inside a write transaction at most once per :attr:`SQLiteStore.sweep_interval`
seconds, and replaced whenever their key is written again.

URLs: ``sqlite:relative/path.db``, ``sqlite:///absolute/path.db``, ``sqlite::memory:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ..clock import Clock, SystemClock
from ..errors import ConfigError, StoreUnavailable
from .migrations import Migration

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SQLiteStore", "open_sqlite_store", "sqlite_path_from_url"]

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
_SCAN = (
    "SELECT key, value FROM records WHERE key >= ? AND key < ? AND key > ? "
    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?"
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


class SQLiteStore:
    """A :class:`~stepup_core.store.base.Store` on one SQLite database. Open with :meth:`open`."""

    #: Seconds between opportunistic sweeps of expired rows (by the injected clock).
    sweep_interval: float = 60.0

    def __init__(self, path: str, clock: Clock, connection: aiosqlite.Connection) -> None:
        self.path = path
        self.clock = clock
        self._conn: aiosqlite.Connection | None = connection
        self._lock = asyncio.Lock()
        self._next_sweep = float("-inf")
        self._reader: sqlite3.Connection | None = None
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
            if path != ":memory:":
                # Probe first: a failed aiosqlite connect leaves its worker thread to wind down
                # on its own, so report the common failures before one is started.
                await asyncio.to_thread(_probe, path)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unavailable(path, "be opened", exc) from exc
        store = cls(path, clock, conn)
        try:
            await store._initialise()
        except BaseException:
            await conn.close()
            raise
        if path != ":memory:":
            try:
                store._reader = _open_reader(path)
            except sqlite3.Error:  # the worker connection still serves every read
                store._reader = None
        return store

    async def _initialise(self) -> None:
        conn = self._connection()
        try:
            await conn.execute_fetchall("PRAGMA busy_timeout = 5000")
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            mode = str(rows[0][0]).lower() if rows else ""
            if self.path != ":memory:" and mode != "wal":
                raise StoreUnavailable(
                    f"SQLite store {self.path!r} could not switch to WAL mode (journal mode is {mode!r})",
                    path=self.path,
                )
            # FULL: a committed transaction is on disk before the call returns, so neither a
            # restart nor a power cut loses a credential or an issued grant.
            await conn.execute_fetchall("PRAGMA synchronous = FULL")
            version_rows = list(await conn.execute_fetchall("PRAGMA user_version"))
            version = int(version_rows[0][0]) if version_rows else 0
            self.version_at_open = version
            if version > LATEST_VERSION:
                raise StoreUnavailable(
                    f"SQLite store {self.path!r} has schema version {version}, newer than this "
                    f"stepup understands ({LATEST_VERSION}); upgrade stepup-core",
                    path=self.path,
                )
            await conn.execute_fetchall("BEGIN IMMEDIATE")
            try:
                self.applied_at_open = await self._apply_migrations(conn)
                await self._sweep(conn, self.clock.now())
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
                raise _unavailable(self.path, "be read: the file is not a SQLite database", exc) from exc
            raise _unavailable(self.path, "be initialised (is the path writable?)", exc) from exc

    async def _apply_migrations(self, conn: aiosqlite.Connection) -> list[Migration]:
        """Inside a ``BEGIN IMMEDIATE`` transaction: apply what is pending (re-reading the version
        under the lock, since another process may have migrated meanwhile)."""
        rows = list(await conn.execute_fetchall("PRAGMA user_version"))
        version = int(rows[0][0]) if rows else 0
        applied: list[Migration] = []
        for migration in MIGRATIONS:
            if migration.version <= version:
                continue
            for statement in _statements(migration.sql):
                await conn.execute_fetchall(statement)
            applied.append(migration)
        if applied:
            now = time.time()
            # Version 1 predates the table: record it too when an existing database gets it.
            history = [m for m in MIGRATIONS if m.version <= LATEST_VERSION and (m in applied or m.version == 1)]
            await conn.executemany(
                "INSERT OR IGNORE INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                [(m.version, m.description, now) for m in history],
            )
            await conn.execute_fetchall(f"PRAGMA user_version = {LATEST_VERSION}")
        return applied

    async def migrate(self) -> list[Migration]:
        """Apply pending migrations (opening already did; another process may have left some)."""
        async with self._transaction() as (conn, _now):
            return await self._apply_migrations(conn)

    async def schema_version(self) -> int:
        async with self._read() as conn:
            rows = list(await conn.execute_fetchall("PRAGMA user_version"))
            return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        """Close the connection. Idempotent; later operations raise StoreUnavailable."""
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()
        if conn is not None:
            async with self._lock:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"SQLite store {self.path!r} is closed", path=self.path)
        return self._conn

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise _unavailable(self.path, "be read", exc) from exc
            except ValueError as exc:  # aiosqlite: the connection's worker has stopped
                raise _unavailable(self.path, "be read", exc) from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[aiosqlite.Connection, float]]:
        """A ``BEGIN IMMEDIATE`` transaction under the lock, committed unless the body raises."""
        async with self._lock:
            conn = self._connection()
            try:
                if conn.in_transaction:  # left open by a cancelled operation
                    await conn.rollback()
                await conn.execute_fetchall("BEGIN IMMEDIATE")
                try:
                    now = self.clock.now()
                    if now >= self._next_sweep:
                        await self._sweep(conn, now)
                    yield conn, now
                except BaseException:
                    if conn.in_transaction:
                        await conn.rollback()
                    raise
                await conn.commit()
            except sqlite3.Error as exc:
                raise _unavailable(self.path, "be written", exc) from exc
            except ValueError as exc:
                if isinstance(exc, _CounterError):
                    raise
                raise _unavailable(self.path, "be written", exc) from exc

    async def _sweep(self, conn: aiosqlite.Connection, now: float) -> None:
        await conn.execute_fetchall(
            "DELETE FROM record_indexes WHERE key IN "
            "(SELECT key FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?)",
            (now,),
        )
        await conn.execute_fetchall("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        self._next_sweep = now + self.sweep_interval

    @staticmethod
    async def _live_value(conn: aiosqlite.Connection, key: str, now: float) -> str | None:
        rows = list(await conn.execute_fetchall(_SELECT_LIVE, (key, now)))
        return None if not rows else str(rows[0][0])

    @staticmethod
    async def _remove(conn: aiosqlite.Connection, key: str) -> None:
        await conn.execute_fetchall("DELETE FROM record_indexes WHERE key = ?", (key,))
        await conn.execute_fetchall("DELETE FROM records WHERE key = ?", (key,))

    @staticmethod
    async def _write(
        conn: aiosqlite.Connection, key: str, value: str, ttl: float | None, indexes: Sequence[str], now: float
    ) -> None:
        expires_at = None if ttl is None else now + ttl
        await conn.execute_fetchall("DELETE FROM record_indexes WHERE key = ?", (key,))
        await conn.execute_fetchall(
            "INSERT INTO records (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, expires_at),
        )
        names = _unique(indexes)
        if names:
            await conn.executemany(
                "INSERT OR IGNORE INTO record_indexes (index_name, key) VALUES (?, ?)",
                [(name, key) for name in names],
            )

    # -- the Store protocol ----------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        async with self._transaction() as (conn, now):
            await self._write(conn, key, value, ttl, indexes, now)

    async def get(self, key: str) -> str | None:
        self._connection()  # closed: StoreUnavailable
        reader = self._reader
        if reader is not None:
            try:
                row = reader.execute(_SELECT_LIVE, (key, self.clock.now())).fetchone()
            except sqlite3.OperationalError:
                pass  # busy or locked: ask the worker connection, which waits
            except sqlite3.Error as exc:
                raise _unavailable(self.path, "be read", exc) from exc
            else:
                return None if row is None else str(row[0])
        async with self._read() as conn:
            return await self._live_value(conn, key, self.clock.now())

    async def delete(self, key: str) -> bool:
        async with self._transaction() as (conn, now):
            live = await self._live_value(conn, key, now) is not None
            await self._remove(conn, key)
            return live

    async def take(self, key: str) -> str | None:
        async with self._transaction() as (conn, now):
            value = await self._live_value(conn, key, now)
            if value is not None:
                await self._remove(conn, key)
            return value

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        async with self._transaction() as (conn, now):
            if await self._live_value(conn, key, now) is not None:
                return False
            await self._write(conn, key, value, ttl, indexes, now)
            return True

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        async with self._transaction() as (conn, now):
            current = await self._live_value(conn, key, now)
            if current is None:
                await self._write(conn, key, str(amount), ttl, (), now)
                return amount
            try:
                value = int(current) + amount
            except ValueError as exc:
                raise _CounterError(f"store record {key!r} is not a counter") from exc
            await conn.execute_fetchall("UPDATE records SET value = ? WHERE key = ?", (str(value), key))
            return value

    async def compare_and_set(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        ttl: float | None = None,
        indexes: Sequence[str] = (),
    ) -> bool:
        async with self._transaction() as (conn, now):
            if await self._live_value(conn, key, now) != expected:
                return False
            await self._write(conn, key, value, ttl, indexes, now)
            return True

    async def list_index(self, index: str) -> dict[str, str]:
        async with self._read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT r.key, r.value FROM record_indexes AS i JOIN records AS r ON r.key = i.key "
                "WHERE i.index_name = ? AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY r.key",
                (index, self.clock.now()),
            )
            return {str(row[0]): str(row[1]) for row in rows}

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix``, in key order, read in pages."""
        after = ""
        upper = prefix + chr(0x10FFFF)
        while True:
            async with self._read() as conn:
                rows = list(await conn.execute_fetchall(_SCAN, (prefix, upper, after, self.clock.now(), batch)))
            for row in rows:
                yield str(row[0]), str(row[1])
            if len(rows) < batch:
                return
            after = str(rows[-1][0])

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute_fetchall("SELECT 1 FROM records LIMIT 1")

    async def journal_mode(self) -> str:
        """The database's journal mode (``wal`` for a file database)."""
        async with self._read() as conn:
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode"))
            return str(rows[0][0]).lower()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<SQLiteStore {self.path!r} {state}>"


class _CounterError(ValueError):
    """``incr`` on a record that does not hold an integer."""


def _open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for ``get``, used on the event loop's thread. It never waits for a
    lock (``busy_timeout = 0``): when SQLite is busy the caller asks the worker connection."""
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


def _probe(path: str) -> None:
    sqlite3.connect(path).close()


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


async def open_sqlite_store(url: str, clock: Clock, **_: Any) -> SQLiteStore:
    """Open the store a ``sqlite:`` URL names (the ``sqlite`` scheme's factory)."""
    return await SQLiteStore.open(sqlite_path_from_url(url), clock)
