"""The SQLite store's schema and operations, each a function the writer thread runs whole on
the writing connection (see :mod:`stepup_core.store.sqlite`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import StoreUnavailable
from .base import Counter, Reservation, Write
from .migrations import Migration

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

#: Bytes of write-ahead log kept on disk once the log is reused from its start (64 MiB).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

_SELECT_LIVE = "SELECT value FROM records WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
_LIST_INDEX = (
    "SELECT r.key, r.value FROM record_indexes AS i JOIN records AS r ON r.key = i.key "
    "WHERE i.index_name = ? AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY i.key"
)  # ordered by i.key (= r.key): the listing's own primary key order, no sort of the rows
_SCAN = (
    "SELECT key, value FROM records WHERE key >= ? AND key < ? AND key > ? "
    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?"
)
_SELECT_EXPIRED = "SELECT key FROM records WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?"


def _unavailable(path: str, action: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"SQLite store {path!r} could not {action}: {exc}", path=path)


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
    # Once the log is reused from its start, a log that grew past this (while a reader held
    # an old snapshot) is cut back to it: the log's size on disk stays bounded.
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
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


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
