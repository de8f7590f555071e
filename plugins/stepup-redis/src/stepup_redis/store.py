"""The Redis store: every stepup instance pointed at one Redis shares tokens, challenges, counters.

Layout under the key prefix (default ``stepup:``, set with ``?prefix=`` in the URL):

``<prefix>r:<key>``
    a hash per record: field ``v`` holds the value, and one field ``i:<name>`` per index the
    record belongs to. The record's TTL is Redis's own (``PEXPIRE``), so an expired record is
    gone for every instance at the same moment and never returned.
``<prefix>i:<name>``
    a set per index holding the keys of its records. A member whose record has expired is
    removed lazily: by the next ``list_index`` of that index, and by writes into the index, each
    of which checks two members drawn at random, so a set that lives on stays near the size of
    its live members; the set itself expires no earlier than its longest-lived member.

``get`` is one ``HGET``; the ``get`` calls of one event-loop turn (or made while the previous
one is on its way) share one exchange (one ``HGET`` per distinct key, written at once: see
:mod:`stepup_core.store.coalesce`), and so do ``list_index`` calls (one script run lists every
index asked for). Every other operation is one Lua script, so it is atomic on the server:
``take`` (single use), ``add`` (replay ledgers), ``incr`` (the TTL is set only when the counter
is created: a fixed window), ``compare_and_set``, ``reserve`` and ``settle``. Scripts touch keys derived from their
arguments, which a standalone Redis (7.0 or later: the scripts carry flags) allows and Redis
Cluster does not.

Operations started together share one exchange with Redis (auto-pipelining): those asked for
in one event-loop turn, or while the previous batch is on its way, are written at once and their
replies read in order, each still its own command or script. An exchange runs on a connection
of the store's own bounded set (redis-py connections: its protocol, parser, TLS and
authentication; commands packed by hiredis), taken from the idle ones without a lock or a pool
checkout and given back at once; one timeout covers the whole exchange. Scripts are sent as ``EVALSHA`` (``EVAL`` once
when Redis does not know them yet). Any connection failure, timeout or a server that refuses to
serve (loading, read-only replica, out of memory, missing ACL permission) raises
:class:`~stepup_core.errors.StoreUnavailable`; a connection that failed is dropped, and a pooled
connection found dead (Redis restarted) is replaced once at once, so the store recovers by itself
when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stepup_core.clock import Clock
from stepup_core.errors import ConfigError, StoreUnavailable
from stepup_core.store.base import Counter, Reservation, Write
from stepup_core.store.coalesce import ReadCoalescer

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

-- Replace the record at rkey. ttl is '' (never expires) or milliseconds; names lists the
-- index names.
local function write(rkey, key, iprefix, value, ttl, names)
  unindex(rkey, key, iprefix)
  redis.call('DEL', rkey)
  local ms = tonumber(ttl)
  if ms ~= nil and ms <= 0 then
    return
  end
  local fields = {'v', value}
  for _, name in ipairs(names) do
    fields[#fields + 1] = 'i:' .. name
    fields[#fields + 1] = '1'
  end
  redis.call('HSET', rkey, unpack(fields))
  if ms ~= nil then
    redis.call('PEXPIRE', rkey, ms)
  end
  local rprefix = string.sub(rkey, 1, #rkey - #key)
  for _, name in ipairs(names) do
    local ikey = iprefix .. name
    local before = redis.call('PTTL', ikey)
    -- Two members drawn at random leave the listing if their record has expired: every write
    -- trims a little, so a listing that lives on stays near the size of its live records.
    for _, member in ipairs(redis.call('SRANDMEMBER', ikey, 2)) do
      if member ~= key and redis.call('EXISTS', rprefix .. member) == 0 then
        redis.call('SREM', ikey, member)
      end
    end
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
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(ARGV, 5)})
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
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(ARGV, 5)})
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
write(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(ARGV, 7)})
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

# KEYS: counters. ARGV: limit and ttl (milliseconds) of each counter, in turn. All or none.
_RESERVE = (
    _MAY_GROW
    + """
local counts = {}
for i = 1, #KEYS do
  local value = redis.call('HGET', KEYS[i], 'v')
  local count = 0
  if value then
    count = tonumber(value)
    if count == nil then
      return redis.error_reply('ERR hash value is not an integer')
    end
  end
  counts[i] = count
end
for i = 1, #KEYS do
  if counts[i] >= tonumber(ARGV[2 * i - 1]) then
    return {0, unpack(counts)}
  end
end
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'v', 1)
  else
    redis.call('HSET', KEYS[i], 'v', 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
  counts[i] = counts[i] + 1
end
return {1, unpack(counts)}
"""
)

# KEYS: the record to take (when ARGV[2] is '1'), the counters to release, the records to
# write. ARGV: index prefix, '1' or '0' (take or not), the taken record's key, number of
# counters, number of writes, then per write: key, value, ttl, number of index names, names.
_SETTLE = (
    _MAY_GROW
    + _COMMON
    + """
local iprefix = ARGV[1]
local k = 1
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
  end
  unindex(KEYS[1], ARGV[3], iprefix)
  redis.call('DEL', KEYS[1])
  k = 2
end
for _ = 1, tonumber(ARGV[4]) do
  local value = redis.call('HGET', KEYS[k], 'v')
  if value then
    local left = tonumber(value)
    if left == nil then
      return redis.error_reply('ERR hash value is not an integer')
    end
    if left - 1 <= 0 then
      redis.call('DEL', KEYS[k])
    else
      redis.call('HSET', KEYS[k], 'v', left - 1)
    end
  end
  k = k + 1
end
local a = 6
for _ = 1, tonumber(ARGV[5]) do
  local count = tonumber(ARGV[a + 3])
  local names = {}
  for j = 1, count do
    names[j] = ARGV[a + 3 + j]
  end
  write(KEYS[k], ARGV[a], iprefix, ARGV[a + 1], ARGV[a + 2], names)
  k = k + 1
  a = a + 4 + count
end
return 1
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

# KEYS: index sets. ARGV: record prefix, then each index's name in the order of KEYS. One
# listing per index, as _LIST_INDEX makes it (``list_index`` calls are coalesced).
_LIST_INDEXES = (
    _ONLY_SHRINKS
    + """
local out = {}
for i = 1, #KEYS do
  local listing = {}
  local field = 'i:' .. ARGV[i + 1]
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local got = redis.call('HMGET', ARGV[1] .. key, 'v', field)
    if got[1] and got[2] then
      listing[#listing + 1] = key
      listing[#listing + 1] = got[1]
    else
      redis.call('SREM', KEYS[i], key)
    end
  end
  out[i] = listing
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


def _listing(flat: Sequence[Any]) -> dict[str, str]:
    """A listing's flat reply (key, value, key, value...) as a dict in key order."""
    pairs = {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
    return dict(sorted(pairs.items()))


if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - redis-py depends on async-timeout there
    from async_timeout import timeout as _timeout


class _Script:
    """A Lua script sent by its SHA-1 (``EVALSHA``), by its text when Redis does not know it yet."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


_PUT_SCRIPT = _Script(_PUT)
_ADD_SCRIPT = _Script(_ADD)
_COMPARE_AND_SET_SCRIPT = _Script(_COMPARE_AND_SET)
_TAKE_SCRIPT = _Script(_TAKE)
_DELETE_SCRIPT = _Script(_DELETE)
_INCR_SCRIPT = _Script(_INCR)
_LIST_INDEX_SCRIPT = _Script(_LIST_INDEX)
_LIST_INDEXES_SCRIPT = _Script(_LIST_INDEXES)
_RESERVE_SCRIPT = _Script(_RESERVE)
_SETTLE_SCRIPT = _Script(_SETTLE)


_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis], a dependency
    _hiredis_pack = None


def _pack(connection: Any, commands: Sequence[Sequence[Any]]) -> Any:
    """The commands in Redis's protocol, as the connection would write them: by hiredis's C
    serializer when the connection encodes as it does (UTF-8, strict; redis-py's synchronous
    client uses it too, its asyncio client packs in Python), else by the connection itself."""
    encoder = connection.encoder
    if _hiredis_pack is not None and encoder.encoding in _UTF8 and encoder.encoding_errors == "strict":
        return [b"".join([_hiredis_pack(tuple(command)) for command in commands])]
    return connection.pack_commands(commands)


_UTF8 = ("utf-8", "utf8", "UTF-8", "UTF8")


class _Connections:
    """At most ``limit`` connections to Redis, each carrying one exchange at a time, and the
    exchanges of concurrent operations written together (auto-pipelining).

    An exchange asked for while none is being sent goes out in the next loop turn, with every
    other exchange asked for in this turn; exchanges asked for while a batch is on its way go out
    together when it is answered (a batch of :attr:`max_batch` commands or more goes at once,
    beside the one on its way). Each operation stays one command (a script runs whole on the
    server), so batching changes no operation's atomicity; a batch costs one write, one wake-up
    and one read for all of them.

    A batch takes an idle connection (or opens one), writes every command at once, reads every
    reply, and gives the connection back. A connection that failed or timed out is dropped; one
    taken from the idle set that turns out dead (Redis restarted) is replaced by a fresh one and
    the batch sent again, once. A failure of the batch is every caller's failure; a caller
    cancelled before its batch is sent is left out of it.
    """

    #: Commands one batch carries before it goes out without waiting for the one on its way.
    max_batch = 256

    def __init__(self, make: Callable[[], Any], limit: int, wait: float, timeout: float | None) -> None:
        self._make = make
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Exchanges asked for and not sent yet, with the futures of their callers.
        self._queued: list[tuple[Sequence[Sequence[Any]], asyncio.Future[list[Any]]]] = []
        self._queued_commands = 0
        #: The task sending the queue, one batch after another, while there is one.
        self._sender: asyncio.Task[None] | None = None
        #: Batches on their way.
        self._in_flight: set[asyncio.Task[None]] = set()

    def exchange(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` (written together, their replies read in order, an error reply as
        it came) for the next batch; await their replies."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a store used from another event loop starts a queue there
            self._loop, self._queued, self._queued_commands = loop, [], 0
            self._sender, self._in_flight = None, set()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append((commands, future))
        self._queued_commands += len(commands)
        if self._queued_commands >= self.max_batch:
            self._start(self._send_batch(self._take_queue()))
        elif self._sender is None:
            # Made directly, never started eagerly: its first step runs in the next loop turn,
            # when every exchange of this turn is queued.
            self._sender = self._start(self._send_queue())
        return future

    def _take_queue(self) -> list[tuple[Sequence[Sequence[Any]], asyncio.Future[list[Any]]]]:
        batch, self._queued, self._queued_commands = self._queued, [], 0
        return batch

    def _start(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.Task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _send_queue(self) -> None:
        try:
            while self._queued:
                await self._send_batch(self._take_queue())
        finally:
            self._sender = None

    async def _send_batch(self, batch: list[tuple[Sequence[Sequence[Any]], asyncio.Future[list[Any]]]]) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        live = [(commands, future) for commands, future in batch if not future.done()]
        if not live:
            return
        flat = [command for commands, _ in live for command in commands]
        try:
            replies = await self._exchange_now(flat)
        except asyncio.CancelledError:  # the store is closing, or the loop shutting down
            for _, future in live:
                if not future.done():
                    future.set_exception(RedisConnectionError("the store's exchange with Redis was stopped"))
            raise
        except BaseException as exc:  # handed to every caller of the batch, who raise it
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for commands, future in live:
            if not future.done():  # cancelled while on its way
                future.set_result(replies[at : at + len(commands)])
            at += len(commands)

    async def _exchange_now(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        slots = self._slots
        if slots.locked():
            try:
                async with _timeout(self._wait):
                    await slots.acquire()
            except asyncio.TimeoutError:
                raise RedisTimeoutError(f"no free connection to Redis within {self._wait:g} s") from None
        else:
            await slots.acquire()
        try:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else self._make()
            try:
                replies = await self._send(connection, commands)
            except (RedisConnectionError, OSError):
                await connection.disconnect(nowait=True)
                if not reused:
                    raise
                connection = self._make()
                try:
                    replies = await self._send(connection, commands)
                except BaseException:
                    await connection.disconnect(nowait=True)
                    raise
            except BaseException:  # a timeout or a cancellation: the connection's state is unknown
                await connection.disconnect(nowait=True)
                raise
            self._idle.append(connection)
            return replies
        finally:
            slots.release()

    async def _send(self, connection: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
        from redis.exceptions import ResponseError

        if not connection.is_connected:
            await connection.connect()
        replies: list[Any] = []
        async with _timeout(self._timeout):
            await connection.send_packed_command(_pack(connection, commands), check_health=False)
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # an error reply: the next reply is still to be read
                    replies.append(exc)
        return replies

    async def close(self) -> None:
        """Let the batches queued or on their way finish (for at most the exchange timeout; then
        they are stopped and their callers fail), then close the idle connections."""
        current = asyncio.get_running_loop()
        in_flight = {task for task in self._in_flight if task.get_loop() is current}
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=self._timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.disconnect()


class RedisStore:
    """A :class:`~stepup_core.store.base.Store` on Redis. Open with :func:`open_redis_store`."""

    def __init__(self, connections: _Connections, prefix: str, where: str) -> None:
        self.prefix = prefix
        self.where = where
        self._connections = connections
        self._closed = False
        self._reads: ReadCoalescer[str] | None = None
        self._listings: ReadCoalescer[dict[str, str]] | None = None
        self._record_prefix = f"{prefix}r:"
        self._index_prefix = f"{prefix}i:"

    # -- keys ----------------------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return self._record_prefix + key

    def _index_key(self, index: str) -> str:
        return self._index_prefix + index

    # -- exchanges ------------------------------------------------------------------------

    async def _command(self, operation: str, *command: Any) -> Any:
        if self._closed:
            raise self._closed_error()
        try:
            (reply,) = await self._connections.exchange([command])
        except BaseException as exc:
            raise self._unavailable(operation, exc) from exc
        return self._reply(operation, reply)

    async def _commands(self, operation: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one exchange (written at once, replies read in order)."""
        return [self._reply(operation, reply) for reply in await self._exchange(operation, commands)]

    async def _exchange(self, operation: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The raw replies of several commands in one exchange (an error reply as it came)."""
        if self._closed:
            raise self._closed_error()
        try:
            return await self._connections.exchange(commands)
        except BaseException as exc:
            raise self._unavailable(operation, exc) from exc

    async def _script(self, operation: str, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError

        if self._closed:
            raise self._closed_error()
        try:
            (reply,) = await self._connections.exchange([("EVALSHA", script.sha, len(keys), *keys, *args)])
            if isinstance(reply, NoScriptError):
                (reply,) = await self._connections.exchange([("EVAL", script.source, len(keys), *keys, *args)])
        except BaseException as exc:
            raise self._unavailable(operation, exc) from exc
        return self._reply(operation, reply)

    def _closed_error(self) -> StoreUnavailable:
        return StoreUnavailable(f"Redis store {self.where} is closed", store=self.where)

    def _unavailable(self, operation: str, exc: BaseException) -> BaseException:
        from redis import exceptions as rex

        if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError)):
            return StoreUnavailable(
                f"Redis store {self.where} is unreachable ({operation}): {exc or type(exc).__name__}",
                store=self.where,
            )
        return exc

    def _reply(self, operation: str, reply: Any) -> Any:
        from redis.exceptions import ResponseError

        if not isinstance(reply, ResponseError):
            return reply
        message = str(reply)
        if "not an integer" in message:
            raise ValueError(f"store record is not a counter: {message}") from reply
        # Anything else is the server refusing to serve: out of memory under noeviction,
        # a read-only replica, loading, missing ACL permissions, failed persistence.
        raise StoreUnavailable(
            f"Redis store {self.where} refused the operation ({operation}): {message or type(reply).__name__}",
            store=self.where,
        ) from reply

    # -- the Store protocol ----------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        await self._script(
            "put", _PUT_SCRIPT, (self._record_key(key),), (key, self._index_prefix, value, _ttl_ms(ttl), *indexes)
        )

    async def get(self, key: str) -> str | None:
        if self._closed:
            raise self._closed_error()
        reads = self._reads = ReadCoalescer.serving(self._reads, self.fetch_many, closed=self._closed_error)
        return await reads.get(key)

    async def fetch_many(self, keys: Sequence[str]) -> dict[str, str | BaseException]:
        """The live value of each of ``keys`` that has one, in one exchange (an ``HGET`` each).
        An error reply for one key is that key's error alone, translated as for any operation."""
        replies = await self._exchange("get", [("HGET", self._record_key(key), "v") for key in keys])
        found: dict[str, str | BaseException] = {}
        for key, reply in zip(keys, replies, strict=True):
            try:
                value = self._reply("get", reply)
            except (StoreUnavailable, ValueError) as exc:
                found[key] = exc
            else:
                if value is not None:
                    found[key] = str(value)
        return found

    async def delete(self, key: str) -> bool:
        return bool(await self._script("delete", _DELETE_SCRIPT, (self._record_key(key),), (key, self._index_prefix)))

    async def take(self, key: str) -> str | None:
        value = await self._script("take", _TAKE_SCRIPT, (self._record_key(key),), (key, self._index_prefix))
        return None if value is None else str(value)

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        written = await self._script(
            "add", _ADD_SCRIPT, (self._record_key(key),), (key, self._index_prefix, value, _ttl_ms(ttl), *indexes)
        )
        return bool(written)

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        return int(await self._script("incr", _INCR_SCRIPT, (self._record_key(key),), (int(amount), _ttl_ms(ttl))))

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
        written = await self._script(
            "compare_and_set", _COMPARE_AND_SET_SCRIPT, (self._record_key(key),), [*args, *indexes]
        )
        return bool(written)

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        keys = [self._record_key(c.key) for c in counters]
        args: list[Any] = []
        for counter in counters:
            args += [int(counter.limit), _ttl_ms(counter.ttl)]
        reply = await self._script("reserve", _RESERVE_SCRIPT, keys, args)
        return Reservation(bool(int(reply[0])), tuple(int(v) for v in reply[1:]))

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        keys = [self._record_key(take)] if take is not None else []
        keys += [self._record_key(key) for key in release]
        keys += [self._record_key(w.key) for w in writes]
        args: list[Any] = [
            self._index_prefix, "0" if take is None else "1", take or "", len(release), len(writes)
        ]
        for w in writes:
            args += [w.key, w.value, _ttl_ms(w.ttl), len(w.indexes), *w.indexes]
        return bool(await self._script("settle", _SETTLE_SCRIPT, keys, args))

    async def list_index(self, index: str) -> dict[str, str]:
        if self._closed:
            raise self._closed_error()
        listings = self._listings = ReadCoalescer.serving(
            self._listings, self.fetch_listings, closed=self._closed_error
        )
        found = await listings.get(index)
        return {} if found is None else dict(found)  # a copy each: callers of one batch share none

    async def fetch_listings(self, indexes: Sequence[str]) -> dict[str, dict[str, str]]:
        """The live records of each of ``indexes``, key to value in key order, in one exchange
        (one script run, as atomic as one ``list_index``)."""
        if len(indexes) == 1:
            (index,) = indexes
            flat = await self._script(
                "list_index", _LIST_INDEX_SCRIPT, (self._index_key(index),), (self._record_prefix, index)
            )
            return {index: _listing(flat)}
        replies = await self._script(
            "list_index", _LIST_INDEXES_SCRIPT, [self._index_key(i) for i in indexes], (self._record_prefix, *indexes)
        )
        return {index: _listing(flat) for index, flat in zip(indexes, replies, strict=True)}

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix`` (``SCAN MATCH``, then the values
        in one pipeline per page); order unspecified."""
        pattern = self._record_key(_glob_escape(prefix)) + "*"
        start = len(self._record_key(""))
        cursor: Any = 0
        while True:
            cursor, names = await self._command("scan", "SCAN", cursor, "MATCH", pattern, "COUNT", batch)
            values = await self._commands("scan", [("HGET", name, "v") for name in names]) if names else []
            for name, value in zip(names, values, strict=True):
                if value is not None:
                    yield str(name)[start:], str(value)
            if int(cursor) == 0:
                return

    async def ping(self) -> None:
        await self._command("ping", "PING")

    async def server_version(self) -> tuple[int, ...] | None:
        """The server's version (``redis_version`` of ``INFO server``), None when it does not say."""
        info = str(await self._command("info", "INFO", "server"))
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name == "redis_version":
                return parse_version(value)
        return None

    async def close(self) -> None:
        """Close the connections. Idempotent; later operations raise StoreUnavailable."""
        if self._closed:
            return
        self._closed = True
        for coalescer in (self._reads, self._listings):
            if coalescer is not None:
                await coalescer.close()
        await self._connections.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RedisStore {self.where} prefix={self.prefix!r} {state}>"


async def open_redis_store(url: str, clock: Clock | None = None, **_: Any) -> RedisStore:
    """Open the store a ``redis://`` or ``rediss://`` URL names.

    The clock is not used: expiry is Redis's own, in the server's time, so every instance agrees.
    Opening does not need Redis to be up (operations raise StoreUnavailable until it is), but a
    failed first ping is logged so a wrong address shows at start-up.
    """
    from redis.asyncio import BlockingConnectionPool
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
    # The pool parsed and checked the URL's options; the store keeps its own connections, with
    # one timeout per exchange instead of one per socket call.
    connection_kwargs = dict(pool.connection_kwargs)
    exchange_timeout = connection_kwargs.pop("socket_timeout", None)
    connection_class = pool.connection_class
    connections = _Connections(
        lambda: connection_class(socket_timeout=None, **connection_kwargs),
        limit=pool.max_connections,
        wait=pool.timeout if pool.timeout is not None else _POOL_DEFAULTS["timeout"],
        timeout=exchange_timeout,
    )
    store = RedisStore(connections, prefix, where)
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
