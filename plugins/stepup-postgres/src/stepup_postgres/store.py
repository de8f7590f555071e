"""The PostgreSQL store: every stepup instance pointed at one database shares tokens,
challenges, counters and credentials.

One table holds every record::

    stepup_records (key text COLLATE "C" PRIMARY KEY, value text, expires_at timestamptz,
                    indexes text[])

``indexes`` names the listings a record belongs to (a GIN index answers ``list_index``), so a
record and its index memberships change together in one row. Every operation is one SQL
statement, so it is atomic without an explicit transaction (``reserve`` and ``settle`` call the
PL/pgSQL functions ``stepup_reserve`` and ``stepup_settle``, which run their steps in the one
transaction of the call): ``take`` is ``DELETE ... RETURNING``,
``add`` and ``incr`` are ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (an expired row is
replaced as if absent), ``compare_and_set`` an ``UPDATE ... WHERE value = $expected`` (or the
``add`` statement when nothing is expected). Under PostgreSQL's default READ COMMITTED isolation
a statement that finds its row locked by another waits and re-checks the row's newest version,
so of many concurrent ``take`` calls exactly one gets the value.

``get`` calls made in one event-loop turn (or while the previous one is on its way) are answered
together by one statement (``WHERE key = ANY(...)``, with the same liveness test; see
:mod:`stepup_core.store.coalesce`), so concurrent requests share one pool checkout and one round
trip; so are ``list_index`` calls (``WHERE indexes && ...``).

Expiry is the database's clock (``now()``), not the instance's, so every instance agrees. An
expired row is never returned (every read filters on ``expires_at``) and is removed by a
background purge that deletes at most :attr:`PostgresStore.purge_batch` rows per statement
(``FOR UPDATE SKIP LOCKED``, so purges of several instances do not wait on one another).

The schema is versioned (``stepup_schema_version``) and migrated forward by
:meth:`PostgresStore.migrate` (``stepup migrate``). By default opening a store applies pending
migrations under an advisory lock; with ``?migrate=manual`` in the URL the store refuses to serve
an out-of-date schema until ``stepup migrate`` has run.

Connections come from one asyncpg pool per store. A connection failure, a timeout or a server
that cannot serve (starting up, shutting down, too many connections, read-only) raises
:class:`~stepup_core.errors.StoreUnavailable`; the pool reconnects on the next operation, so the
store recovers by itself when PostgreSQL is back.
"""

# The statements below are joined from constant fragments when the module loads; every value
# is a bound parameter ($1...), and the one identifier (the schema) is validated by the URL parser.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from stepup_core.errors import ConfigError, StoreUnavailable
from stepup_core.store.base import Counter, Reservation, Write
from stepup_core.store.coalesce import DEFAULT_MAX_BATCH, ReadCoalescer

from .schema import LATEST_VERSION, MIGRATIONS, Migration

__all__ = ["PostgresStore", "StoreUrl", "open_postgres_store", "parse_store_url"]

log = logging.getLogger("stepup.postgres")

#: Store options a URL's query may set; every other query parameter goes to asyncpg/libpq.
_OPTIONS = ("schema", "migrate", "min_size", "max_size", "command_timeout", "connect_timeout")
_ADVISORY_LOCK = 0x5354_4550_5550  # "STEPUP"

_LIVE = "(expires_at IS NULL OR expires_at > now())"
_EXPIRES = "now() + $3::float8 * interval '1 second'"

#: ``get``: the live records among several keys (``get`` calls are coalesced), by the number of
#: parameters. ``key IN ($1, ..., $n)`` costs the server about half what ``key = ANY($1)`` with
#: an array costs, so a batch is padded (with its last key) to the next power of two: one
#: prepared statement per size, nine in all.
_GET_MANY = {
    size: f"SELECT key, value FROM stepup_records WHERE key IN ({', '.join(f'${n}' for n in range(1, size + 1))}) "
    f"AND {_LIVE}"
    for size in (1 << power for power in range(DEFAULT_MAX_BATCH.bit_length()))
}
#: Batches larger than any in :data:`_GET_MANY` (``fetch_many`` called directly).
_GET_ANY = f"SELECT key, value FROM stepup_records WHERE key = ANY($1::text[]) AND {_LIVE}"
_PUT = f"""
INSERT INTO stepup_records AS r (key, value, expires_at, indexes) VALUES ($1, $2, {_EXPIRES}, $4)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                                indexes = excluded.indexes
"""
_ADD = _PUT + " WHERE r.expires_at IS NOT NULL AND r.expires_at <= now() RETURNING 1"
_DELETE = f"DELETE FROM stepup_records WHERE key = $1 RETURNING {_LIVE} AS live"
_TAKE = f"DELETE FROM stepup_records WHERE key = $1 RETURNING value, {_LIVE} AS live"
_INCR = f"""
INSERT INTO stepup_records AS r (key, value, expires_at, indexes) VALUES ($1, $2::bigint::text, {_EXPIRES}, '{{}}')
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN excluded.value
                 ELSE (r.value::bigint + $2::bigint)::text END,
    expires_at = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN excluded.expires_at
                      ELSE r.expires_at END,
    indexes = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN '{{}}' ELSE r.indexes END
RETURNING value::bigint
"""
_REPLACE_IF = f"""
UPDATE stepup_records SET value = $2, expires_at = {_EXPIRES}, indexes = $4
WHERE key = $1 AND value = $5 AND {_LIVE} RETURNING 1
"""
#: ``reserve`` and ``settle``: server-side functions (schema version 2), one statement each.
_RESERVE = "SELECT stepup_reserve($1::text[], $2::bigint[], $3::float8[])"
_SETTLE = "SELECT stepup_settle($1, $2::text[], $3::text[], $4::text[], $5::float8[], $6::integer[], $7::text[])"
_LIST_INDEX = f"SELECT key, value FROM stepup_records WHERE indexes @> ARRAY[$1::text] AND {_LIVE} ORDER BY key"
#: The listings of several indexes (``list_index`` calls are coalesced): each row once, with
#: the names it is listed under.
_LIST_INDEXES = f"SELECT key, value, indexes FROM stepup_records WHERE indexes && $1::text[] AND {_LIVE} ORDER BY key"
_SCAN = f"""
SELECT key, value FROM stepup_records
WHERE key >= $1 AND key < $1 || chr(1114111) AND key > $2 AND {_LIVE}
ORDER BY key LIMIT $3
"""
_PURGE = """
DELETE FROM stepup_records WHERE key IN (
    SELECT key FROM stepup_records WHERE expires_at <= now() ORDER BY expires_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
"""


@attrs.frozen
class StoreUrl:
    """A parsed ``postgresql://`` store URL."""

    dsn: str
    where: str
    schema: str | None = None
    auto_migrate: bool = True
    min_size: int = 1
    max_size: int = 10
    command_timeout: float = 5.0
    connect_timeout: float = 5.0


def _number(name: str, value: str, cast: type[int] | type[float], minimum: float) -> Any:
    try:
        parsed = cast(value)
    except ValueError:
        raise ConfigError(f"PostgreSQL store URL: {name}={value!r} is not a number") from None
    if parsed < minimum:
        raise ConfigError(f"PostgreSQL store URL: {name} must be at least {minimum}, got {value}")
    return parsed


def parse_store_url(url: str) -> StoreUrl:
    """Split a store URL into the DSN for asyncpg, the store's own options and a description
    without secrets (``postgresql://host:port/database``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid PostgreSQL store URL: {exc}") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL store URL: scheme {parts.scheme!r}; use postgresql://")
    options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            options[name] = value
        else:
            kept.append((name, value))
    database = parts.path.lstrip("/") or "(default database)"
    where = f"postgresql://{parts.hostname or 'localhost'}:{port or 5432}/{database}"
    schema = options.get("schema") or None
    if schema is not None and not (schema.replace("_", "a").isalnum() and schema.isascii() and not schema[0].isdigit()):
        raise ConfigError(f"PostgreSQL store URL: schema={schema!r} must be letters, digits and underscores")
    migrate = options.get("migrate", "auto")
    if migrate not in ("auto", "manual"):
        raise ConfigError(f"PostgreSQL store URL: migrate must be 'auto' or 'manual', got {migrate!r}")
    min_size = _number("min_size", options.get("min_size", "1"), int, 0)
    max_size = _number("max_size", options.get("max_size", "10"), int, 1)
    if min_size > max_size:
        raise ConfigError(f"PostgreSQL store URL: min_size ({min_size}) exceeds max_size ({max_size})")
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(kept)))
    return StoreUrl(
        dsn=dsn,
        where=where + (f" (schema {schema})" if schema else ""),
        schema=schema,
        auto_migrate=migrate == "auto",
        min_size=min_size,
        max_size=max_size,
        command_timeout=_number("command_timeout", options.get("command_timeout", "5"), float, 0.1),
        connect_timeout=_number("connect_timeout", options.get("connect_timeout", "5"), float, 0.1),
    )


async def _keep_session(connection: Any) -> None:
    """The pool's reset on release. asyncpg's default sends ``RESET ALL``, ``UNLISTEN *``,
    ``CLOSE ALL`` and an advisory unlock on every release: a second round trip for each one-statement
    operation. The store never changes session state (no SET, LISTEN, cursors or session-level
    locks; the migration lock is transaction-scoped), and asyncpg still rolls back a transaction
    left open before calling this, so there is nothing to reset."""


def _ttl(ttl: float | None) -> float | None:
    return None if ttl is None else float(ttl)


def _indexes(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


class PostgresStore:
    """A :class:`~stepup_core.store.base.Store` on PostgreSQL. Open with :func:`open_postgres_store`."""

    #: Seconds between background purges of expired rows.
    purge_interval: float = 60.0
    #: Rows one purge statement deletes at most.
    purge_batch: int = 1000

    def __init__(self, url: StoreUrl) -> None:
        self.url = url
        self.where = url.where
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._schema_lock = asyncio.Lock()
        self._closed = False
        self._schema_ready = False
        self._purger: asyncio.Task[None] | None = None
        self._reads: ReadCoalescer[str] | None = None
        self._listings: ReadCoalescer[dict[str, str]] | None = None
        #: A pool connection kept for the coalesced reads, which send one fetch at a time: a
        #: protected route's token lookup then skips the pool's acquire and release (about a
        #: third of the client's CPU for one statement). Dropped (and replaced on the next read)
        #: after any failure; never kept from a pool of one connection.
        self._reader: Any = None
        self._reader_busy = False
        #: Schema version found when the store first reached the database (None: not yet).
        self.version_at_open: int | None = None

    # -- connections and errors -------------------------------------------------------------

    async def _get_pool(self) -> Any:
        import asyncpg

        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                settings = {"search_path": f'"{self.url.schema}", public'} if self.url.schema else {}
                self._pool = await asyncpg.create_pool(
                    self.url.dsn,
                    min_size=self.url.min_size,
                    max_size=self.url.max_size,
                    command_timeout=self.url.command_timeout,
                    timeout=self.url.connect_timeout,
                    server_settings=settings,
                    # Statements are prepared once per connection; the cache holds all of ours.
                    statement_cache_size=64,
                    reset=_keep_session,
                )
        return self._pool

    def _translate(self, exc: BaseException, operation: str) -> BaseException | None:
        """The error to raise for ``exc`` from the driver (None: raise it as it is)."""
        import asyncpg

        if isinstance(exc, StoreUnavailable):
            return None
        if isinstance(exc, asyncpg.InvalidTextRepresentationError):
            return ValueError(f"store record is not a counter: {exc}")
        if isinstance(exc, asyncpg.NumericValueOutOfRangeError):
            return ValueError(f"store counter out of range: {exc}")
        unavailable = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # The driver's own state broken by a connection the server dropped mid-statement
            # ("cannot switch to state ...; another operation is in progress").
            asyncpg.InternalClientError,
            OSError,
            asyncio.TimeoutError,
        )
        if isinstance(exc, unavailable):
            # Connection failures (class 08), shutdown and start-up (57P), too many connections,
            # a read-only standby, a disk full: the database cannot serve now.
            if self._closed:
                return self._closed_error()
            return StoreUnavailable(
                f"PostgreSQL store {self.where} is unavailable ({operation}): {exc or type(exc).__name__}",
                store=self.where,
            )
        return None

    def _closed_error(self) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL store {self.where} is closed", store=self.where)

    @contextlib.asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        if self._closed:
            raise self._closed_error()
        try:
            yield
        except Exception as exc:
            translated = self._translate(exc, operation)
            if translated is None:
                raise
            raise translated from exc

    @contextlib.asynccontextmanager
    async def _connection(self, operation: str) -> AsyncIterator[Any]:
        async with self._guard(operation):
            pool = await self._get_pool()
            if not self._schema_ready:
                await self._prepare_schema(pool)
            async with pool.acquire() as conn:
                yield conn

    # -- schema ---------------------------------------------------------------------------

    async def _current_version(self, conn: Any) -> int:
        exists = await conn.fetchval("SELECT to_regclass('stepup_schema_version') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM stepup_schema_version"))

    async def _prepare_schema(self, pool: Any) -> None:
        async with self._schema_lock:
            if not self._schema_ready:
                await self._check_schema(pool)

    async def _check_schema(self, pool: Any) -> None:
        async with pool.acquire() as conn:
            version = await self._current_version(conn)
            if self.version_at_open is None:
                self.version_at_open = version
            if version > LATEST_VERSION:
                raise StoreUnavailable(
                    f"PostgreSQL store {self.where} has schema version {version}, newer than this "
                    f"stepup-postgres understands ({LATEST_VERSION}); upgrade stepup-postgres",
                    store=self.where,
                )
            if version < LATEST_VERSION:
                if not self.url.auto_migrate:
                    raise StoreUnavailable(
                        f"PostgreSQL store {self.where} has schema version {version}; this stepup needs "
                        f"{LATEST_VERSION}: run `stepup migrate`",
                        store=self.where,
                    )
                await self._apply(conn)
        self._schema_ready = True
        self._start_purger()

    async def _apply(self, conn: Any) -> list[Migration]:
        """Apply pending migrations in one transaction under an advisory lock, so instances
        starting together migrate once."""
        applied: list[Migration] = []
        async with conn.transaction():
            # The lock first: CREATE SCHEMA IF NOT EXISTS itself races with a concurrent one.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            if self.url.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.url.schema}"')
            version = await self._current_version(conn)
            for migration in MIGRATIONS:
                if migration.version <= version:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO stepup_schema_version (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )
                applied.append(migration)
        return applied

    async def migrate(self) -> list[Migration]:
        """Apply every pending migration; returns those applied (none when up to date)."""
        async with self._guard("migrate"):
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                version = await self._current_version(conn)
                if self.version_at_open is None:
                    self.version_at_open = version
                if version > LATEST_VERSION:
                    raise StoreUnavailable(
                        f"PostgreSQL store {self.where} has schema version {version}, newer than this "
                        f"stepup-postgres understands ({LATEST_VERSION}); upgrade stepup-postgres",
                        store=self.where,
                    )
                applied = await self._apply(conn)
        self._schema_ready = True
        return applied

    async def schema_version(self) -> int:
        """The database's schema version now (0: no schema yet)."""
        async with self._guard("schema_version"):
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                return await self._current_version(conn)

    # -- expiry ---------------------------------------------------------------------------

    def _start_purger(self) -> None:
        if self._purger is None and not self._closed:
            self._purger = asyncio.get_running_loop().create_task(self._purge_forever())

    async def _purge_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.purge_interval)
            try:
                await self.purge_expired()
            except StoreUnavailable as exc:
                log.debug("purge of expired records skipped: %s", exc)
            except Exception:
                log.exception("purge of expired records failed")

    async def purge_expired(self, *, max_batches: int | None = None) -> int:
        """Delete expired rows, :attr:`purge_batch` per statement, until none is left (or
        ``max_batches`` statements ran); returns how many were deleted. Each statement is short,
        so requests never wait long behind it."""
        deleted = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            async with self._connection("purge") as conn:
                status = await conn.execute(_PURGE, self.purge_batch)
            count = int(status.split()[-1])
            deleted += count
            batches += 1
            if count < self.purge_batch:
                break
            await asyncio.sleep(0)
        return deleted

    async def _run(self, operation: str, method: str, sql: str, *args: Any) -> Any:
        """One statement (``method``: ``execute``, ``fetch``, ``fetchrow`` or ``fetchval``) on a
        pooled connection: once the schema is ready, by the pool's own acquire-and-run, without
        the context managers of the first contact."""
        pool = self._pool
        if pool is None or not self._schema_ready or self._closed:
            async with self._connection(operation) as conn:
                return await getattr(conn, method)(sql, *args)
        try:
            return await getattr(pool, method)(sql, *args)
        except Exception as exc:
            translated = self._translate(exc, operation)
            if translated is None:
                raise
            raise translated from exc

    # -- the Store protocol ------------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        await self._run("put", "execute", _PUT, key, value, _ttl(ttl), _indexes(indexes))

    async def get(self, key: str) -> str | None:
        if self._closed:
            raise self._closed_error()
        reads = self._reads = ReadCoalescer.serving(self._reads, self.fetch_many, closed=self._closed_error)
        return await reads.get(key)

    async def fetch_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The live value of each of ``keys`` that has one, in one statement."""
        if not keys:
            return {}
        size = 1 << (len(keys) - 1).bit_length()
        statement = _GET_MANY.get(size)
        if statement is None:
            rows = await self._read("get", _GET_ANY, list(keys))
        else:
            rows = await self._read("get", statement, *keys, *[keys[-1]] * (size - len(keys)))
        return {str(row[0]): str(row[1]) for row in rows}

    async def _read(self, operation: str, sql: str, *args: Any) -> Any:
        """The rows of one coalesced read (token lookups, credential listings), without the
        context managers of the other operations: on the held reader connection, or (while it
        is busy with another batch) the pool's own acquire-and-fetch."""
        pool = self._pool
        if pool is None or not self._schema_ready or self._closed:
            async with self._connection(operation) as conn:
                return await conn.fetch(sql, *args)
        held = not self._reader_busy and self.url.max_size > 1  # a pool of one serves writes too
        try:
            if held:
                self._reader_busy = True
                if self._reader is None:
                    self._reader = await pool.acquire()
                return await self._reader.fetch(sql, *args)
            return await pool.fetch(sql, *args)
        except BaseException as exc:
            if held:
                await self._drop_reader()
            translated = self._translate(exc, operation) if isinstance(exc, Exception) else None
            if translated is None:
                raise
            raise translated from exc
        finally:
            if held:
                self._reader_busy = False

    async def _drop_reader(self) -> None:
        """Give the held reader connection back to the pool, closed: after a failure (or a
        cancellation mid-statement) its state is not to be trusted. The next read takes another."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        pool = self._pool
        # A connection the server dropped is back in the pool already: both calls may refuse.
        with contextlib.suppress(Exception):
            reader.terminate()
            if pool is not None:
                await pool.release(reader)

    async def delete(self, key: str) -> bool:
        return bool(await self._run("delete", "fetchval", _DELETE, key))

    async def take(self, key: str) -> str | None:
        row = await self._run("take", "fetchrow", _TAKE, key)
        return str(row["value"]) if row is not None and row["live"] else None

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        written = await self._run("add", "fetchval", _ADD, key, value, _ttl(ttl), _indexes(indexes))
        return written is not None

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        return int(await self._run("incr", "fetchval", _INCR, key, int(amount), _ttl(ttl)))

    async def compare_and_set(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        ttl: float | None = None,
        indexes: Sequence[str] = (),
    ) -> bool:
        if expected is None:
            return await self.add(key, value, ttl=ttl, indexes=indexes)
        written = await self._run(
            "compare_and_set", "fetchval", _REPLACE_IF, key, value, _ttl(ttl), _indexes(indexes), expected
        )
        return written is not None

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        """One statement (``stepup_reserve``): the counters' keys locked (transaction-level
        advisory locks, in key order), their values read, and all incremented only when none
        is full."""
        reply = await self._run(
            "reserve", "fetchval", _RESERVE,
            [c.key for c in counters], [int(c.limit) for c in counters], [float(c.ttl) for c in counters],
        )
        return Reservation(bool(reply[0]), tuple(int(count) for count in reply[1:]))

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        """One statement (``stepup_settle``): the record taken (none live: nothing changes,
        False), each live counter given one place back (removed at 0), every record written."""
        names = [_indexes(w.indexes) for w in writes]
        settled = await self._run(
            "settle", "fetchval", _SETTLE,
            take, list(release), [w.key for w in writes], [w.value for w in writes], [_ttl(w.ttl) for w in writes],
            [len(n) for n in names], [name for n in names for name in n],
        )
        return bool(settled)

    async def list_index(self, index: str) -> dict[str, str]:
        if self._closed:
            raise self._closed_error()
        listings = self._listings = ReadCoalescer.serving(
            self._listings, self.fetch_listings, closed=self._closed_error
        )
        found = await listings.get(index)
        return {} if found is None else dict(found)  # a copy each: callers of one batch share none

    async def fetch_listings(self, indexes: Sequence[str]) -> dict[str, dict[str, str]]:
        """The live records of each of ``indexes``, key to value in key order, in one statement."""
        if len(indexes) == 1:
            (index,) = indexes
            rows = await self._read("list_index", _LIST_INDEX, index)
            return {index: {str(row[0]): str(row[1]) for row in rows}}
        listings: dict[str, dict[str, str]] = {index: {} for index in indexes}
        for key, value, names in await self._read("list_index", _LIST_INDEXES, list(indexes)):
            for name in names:
                listing = listings.get(name)
                if listing is not None:
                    listing[str(key)] = str(value)
        return listings

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix``, in key order, read in pages."""
        after = ""
        while True:
            async with self._connection("scan") as conn:
                rows = await conn.fetch(_SCAN, prefix, after, batch)
            for row in rows:
                yield str(row["key"]), str(row["value"])
            if len(rows) < batch:
                return
            after = str(rows[-1]["key"])

    async def ping(self) -> None:
        async with self._connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        """Stop the purge and close the pool. Idempotent; later operations raise StoreUnavailable."""
        if self._closed:
            return
        self._closed = True
        for coalescer in (self._reads, self._listings):
            if coalescer is not None:
                await coalescer.close()
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await purger
        reader, self._reader = self._reader, None
        pool, self._pool = self._pool, None
        if pool is not None:
            if reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pool.release(reader), timeout=5)
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except Exception:  # noqa: BLE001 - a dead server: drop the connections
                pool.terminate()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresStore {self.where} {state}>"


async def open_postgres_store(url: str, clock: Any = None, **_: Any) -> PostgresStore:
    """Open the store a ``postgresql://`` (or ``postgres://``) URL names.

    The clock is not used: expiry is the database's ``now()``, so every instance agrees.
    Opening does not need PostgreSQL to be up (operations raise StoreUnavailable until it is,
    and the schema is checked on first contact), but a failed first contact is logged so a
    wrong address shows at start-up.
    """
    store = PostgresStore(parse_store_url(url))
    try:
        await store.ping()
    except StoreUnavailable as exc:
        if "newer than this" in str(exc):
            await store.close()
            raise
        if "stepup migrate" in str(exc):
            log.warning("%s", exc)
            return store
        log.warning("%s; stepup answers 'store unavailable' until it can reach PostgreSQL", exc)
    return store
