"""The Redis store: every stepup instance pointed at one Redis shares tokens, challenges, counters.

Layout under the key prefix (default ``stepup:``, set with ``?prefix=`` in the URL):

``<prefix>r:<key>``
    a hash per record: field ``v`` holds the value, and one field ``i:<name>`` per index the
    record belongs to. The record's TTL is Redis's own (``PEXPIRE``), so an expired record is
    gone for every instance at the same moment and never returned.
``<prefix>i:<name>``
    a set per index holding the keys of its records. A member whose record has expired is
    removed lazily, by the next ``list_index`` of that index; the set itself expires no earlier
    than its longest-lived member.

``get`` is one ``HGET``. Every other operation is one Lua script, so it is atomic on the server:
``take`` (single use), ``add`` (replay ledgers), ``incr`` (the TTL is set only when the counter
is created: a fixed window) and ``compare_and_set``. Scripts touch keys derived from their
arguments, which a standalone Redis (7.0 or later: the scripts carry flags) allows and Redis
Cluster does not.

Connections come from one bounded pool per store. Any connection failure, timeout or a server
that refuses to serve (loading, read-only replica, out of memory, missing ACL permission) raises
:class:`~stepup_core.errors.StoreUnavailable`; the next operation opens fresh connections, so
the store recovers by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stepup_core.clock import Clock
from stepup_core.errors import ConfigError, StoreUnavailable

__all__ = ["DEFAULT_PREFIX", "MIN_SERVER_VERSION", "RedisStore", "open_redis_store", "parse_store_url", "parse_version"]

log = logging.getLogger("stepup.redis")

DEFAULT_PREFIX = "stepup:"
#: The scripts use Redis 7 script flags.
MIN_SERVER_VERSION = (7, 0)

#: Connection settings a URL's query may override (``?socket_timeout=2&max_connections=100``).
_POOL_DEFAULTS: dict[str, Any] = {
    "max_connections": 50,  # per store (per stepup process)
    "timeout": 5.0,  # seconds to wait for a free pooled connection
    "socket_connect_timeout": 5.0,
    "socket_timeout": 5.0,
}

#: Scripts that may add data are refused while Redis is out of memory (``maxmemory`` with
#: ``noeviction``); scripts that only remove data run regardless, so a token can still be used up
#: and a record deleted. Shebang flags need Redis 7.0 or later.
_MAY_GROW = "#!lua\n"
_ONLY_SHRINKS = "#!lua flags=allow-oom\n"

_COMMON = """
local function unindex(rkey, key, iprefix)
  for _, field in ipairs(redis.call('HKEYS', rkey)) do
    if string.sub(field, 1, 2) == 'i:' then
      redis.call('SREM', iprefix .. string.sub(field, 3), key)
    end
  end
end

-- Replace the record at rkey. ttl is '' (never expires) or milliseconds; the index names are
-- ARGV[first_index] onwards.
local function write(rkey, key, iprefix, value, ttl, first_index)
  unindex(rkey, key, iprefix)
  redis.call('DEL', rkey)
  local ms = tonumber(ttl)
  if ms ~= nil and ms <= 0 then
    return
  end
  local fields = {'v', value}
  for i = first_index, #ARGV do
    fields[#fields + 1] = 'i:' .. ARGV[i]
    fields[#fields + 1] = '1'
  end
  redis.call('HSET', rkey, unpack(fields))
  if ms ~= nil then
    redis.call('PEXPIRE', rkey, ms)
  end
  for i = first_index, #ARGV do
    local ikey = iprefix .. ARGV[i]
    local before = redis.call('PTTL', ikey)
    redis.call('SADD', ikey, key)
    if ms == nil then
      if before >= 0 then
        redis.call('PERSIST', ikey)
      end
    elseif before == -2 or (before >= 0 and before < ms) then
      redis.call('PEXPIRE', ikey, ms)
    end
  end
end
"""

# KEYS: record. ARGV: key, index prefix, value, ttl, index names...
_PUT = (
    _MAY_GROW
    + _COMMON
    + """
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 5)
return 1
"""
)

# KEYS: record. ARGV: key, index prefix, value, ttl, index names...
_ADD = (
    _MAY_GROW
    + _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 5)
return 1
"""
)

# KEYS: record. ARGV: key, index prefix, value, ttl, has expected ('0'/'1'), expected, index names...
_COMPARE_AND_SET = (
    _MAY_GROW
    + _COMMON
    + """
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[5] == '0' then
  if current then
    return 0
  end
elseif (not current) or current ~= ARGV[6] then
  return 0
end
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 7)
return 1
"""
)

# KEYS: record. ARGV: key, index prefix.
_TAKE = (
    _ONLY_SHRINKS
    + _COMMON
    + """
local value = redis.call('HGET', KEYS[1], 'v')
if not value then
  return false
end
unindex(KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1])
return value
"""
)

# KEYS: record. ARGV: key, index prefix.
_DELETE = (
    _ONLY_SHRINKS
    + _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
unindex(KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""
)

# KEYS: record. ARGV: amount, ttl (milliseconds). The TTL is set only when the counter is created.
_INCR = (
    _MAY_GROW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'v', ARGV[1])
end
local ms = tonumber(ARGV[2])
if ms > 0 then
  redis.call('HSET', KEYS[1], 'v', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ms)
end
return tonumber(ARGV[1])
"""
)

# KEYS: index set. ARGV: record prefix, index name. Drops members whose record is gone.
_LIST_INDEX = (
    _ONLY_SHRINKS
    + """
local out = {}
local field = 'i:' .. ARGV[2]
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local got = redis.call('HMGET', ARGV[1] .. key, 'v', field)
  if got[1] and got[2] then
    out[#out + 1] = key
    out[#out + 1] = got[1]
  else
    redis.call('SREM', KEYS[1], key)
  end
end
return out
"""
)


def parse_store_url(url: str) -> tuple[str, str, str]:
    """Split a store URL into (the URL for redis-py, the key prefix, a description without secrets)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid Redis store URL: {exc}") from exc
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise ConfigError(f"not a Redis store URL: scheme {parts.scheme!r}; use redis:// or rediss://")
    prefix = DEFAULT_PREFIX
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            prefix = value
        else:
            kept.append((name, value))
    host = parts.hostname or "localhost"
    where = f"{parts.scheme}://{host}:{port or 6379}{parts.path or '/0'}"
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix, where


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"7.0.15"`` -> ``(7, 0, 15)``; None for anything else."""
    parts = text.strip().split(".")
    if not text.strip() or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _ttl_ms(ttl: float | None) -> str:
    if ttl is None:
        return ""
    if ttl <= 0:
        return "0"
    return str(max(1, math.ceil(ttl * 1000)))


class RedisStore:
    """A :class:`~stepup_core.store.base.Store` on Redis. Open with :func:`open_redis_store`."""

    def __init__(self, client: Any, pool: Any, prefix: str, where: str) -> None:
        self.prefix = prefix
        self.where = where
        self._client = client
        self._pool = pool
        self._closed = False
        self._put = client.register_script(_PUT)
        self._add = client.register_script(_ADD)
        self._cas = client.register_script(_COMPARE_AND_SET)
        self._take = client.register_script(_TAKE)
        self._delete = client.register_script(_DELETE)
        self._incr = client.register_script(_INCR)
        self._list_index = client.register_script(_LIST_INDEX)

    # -- keys ----------------------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return f"{self.prefix}r:{key}"

    def _index_key(self, index: str) -> str:
        return f"{self.prefix}i:{index}"

    @property
    def _index_prefix(self) -> str:
        return f"{self.prefix}i:"

    # -- error handling -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        from redis import exceptions as rex

        if self._closed:
            raise StoreUnavailable(f"Redis store {self.where} is closed", store=self.where)
        try:
            yield
        except (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError) as exc:
            raise StoreUnavailable(
                f"Redis store {self.where} is unreachable ({operation}): {exc or type(exc).__name__}",
                store=self.where,
            ) from exc
        except rex.ResponseError as exc:
            message = str(exc)
            if "not an integer" in message:
                raise ValueError(f"store record is not a counter: {message}") from exc
            # Anything else is the server refusing to serve: out of memory under noeviction,
            # a read-only replica, loading, missing ACL permissions, failed persistence.
            raise StoreUnavailable(
                f"Redis store {self.where} refused the operation ({operation}): {message or type(exc).__name__}",
                store=self.where,
            ) from exc

    # -- the Store protocol ----------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        async with self._guard("put"):
            await self._put(keys=[self._record_key(key)], args=[key, self._index_prefix, value, _ttl_ms(ttl), *indexes])

    async def get(self, key: str) -> str | None:
        async with self._guard("get"):
            value = await self._client.hget(self._record_key(key), "v")
        return None if value is None else str(value)

    async def delete(self, key: str) -> bool:
        async with self._guard("delete"):
            removed = await self._delete(keys=[self._record_key(key)], args=[key, self._index_prefix])
        return bool(removed)

    async def take(self, key: str) -> str | None:
        async with self._guard("take"):
            value = await self._take(keys=[self._record_key(key)], args=[key, self._index_prefix])
        return None if value is None else str(value)

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        async with self._guard("add"):
            written = await self._add(
                keys=[self._record_key(key)], args=[key, self._index_prefix, value, _ttl_ms(ttl), *indexes]
            )
        return bool(written)

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        async with self._guard("incr"):
            value = await self._incr(keys=[self._record_key(key)], args=[int(amount), _ttl_ms(ttl)])
        return int(value)

    async def compare_and_set(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        ttl: float | None = None,
        indexes: Sequence[str] = (),
    ) -> bool:
        args = [key, self._index_prefix, value, _ttl_ms(ttl), "0" if expected is None else "1", expected or ""]
        async with self._guard("compare_and_set"):
            written = await self._cas(keys=[self._record_key(key)], args=[*args, *indexes])
        return bool(written)

    async def list_index(self, index: str) -> dict[str, str]:
        async with self._guard("list_index"):
            flat = await self._list_index(keys=[self._index_key(index)], args=[f"{self.prefix}r:", index])
        pairs = {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
        return dict(sorted(pairs.items()))

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix`` (``SCAN MATCH``, then the values
        in one pipeline per page); order unspecified."""
        pattern = self._record_key(_glob_escape(prefix)) + "*"
        start = len(self._record_key(""))
        cursor: Any = 0
        while True:
            async with self._guard("scan"):
                cursor, names = await self._client.scan(cursor=cursor, match=pattern, count=batch)
                if names:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for name in names:
                            pipe.hget(name, "v")
                        values = await pipe.execute()
                else:
                    values = []
            for name, value in zip(names, values, strict=True):
                if value is not None:
                    yield str(name)[start:], str(value)
            if int(cursor) == 0:
                return

    async def ping(self) -> None:
        async with self._guard("ping"):
            await self._client.ping()

    async def server_version(self) -> tuple[int, ...] | None:
        """The server's version (``redis_version`` of ``INFO server``), None when it does not say."""
        async with self._guard("info"):
            info = await self._client.info("server")
        return parse_version(str(info.get("redis_version", "")))

    async def close(self) -> None:
        """Close the pool's connections. Idempotent; later operations raise StoreUnavailable."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._client.aclose()
        with contextlib.suppress(Exception):
            await self._pool.disconnect()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RedisStore {self.where} prefix={self.prefix!r} {state}>"


async def open_redis_store(url: str, clock: Clock | None = None, **_: Any) -> RedisStore:
    """Open the store a ``redis://`` or ``rediss://`` URL names.

    The clock is not used: expiry is Redis's own, in the server's time, so every instance agrees.
    Opening does not need Redis to be up (operations raise StoreUnavailable until it is), but a
    failed first ping is logged so a wrong address shows at start-up.
    """
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    redis_url, prefix, where = parse_store_url(url)
    try:
        pool = BlockingConnectionPool.from_url(
            redis_url,
            decode_responses=True,
            # One retry, only when a pooled connection turns out to be dead (Redis restarted):
            # the command is sent again on a fresh connection.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **_POOL_DEFAULTS,
        )
        # Build (without connecting) one connection now, so an unknown URL option is reported
        # here and not on the first request.
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid Redis store URL {where}: {exc}") from exc
    store = RedisStore(Redis(connection_pool=pool), pool, prefix, where)
    try:
        version = await store.server_version()
    except StoreUnavailable as exc:
        log.warning("%s; stepup answers 'store unavailable' until it can reach Redis", exc)
        return store
    if version is not None and version < MIN_SERVER_VERSION:
        await store.close()
        shown = ".".join(map(str, version))
        raise ConfigError(f"Redis store {where} runs Redis {shown}; stepup-redis needs Redis 7.0 or later")
    return store
