"""In-process store for tests and single-process development. Not shared, not persistent.

Every operation runs without awaiting in between, so on one event loop each is atomic.

Expired records are never returned, and they do not stay in memory either: every record with a
TTL has an entry in a heap ordered by expiry, and at most once per :attr:`MemoryStore.purge_interval`
seconds (by the injected clock) an operation starts a background purge that removes what has
expired, :attr:`MemoryStore.purge_batch` records at a time with the event loop free in between,
so no request waits behind it long. The heap itself is rebuilt from the live records when stale
entries (of records since replaced or removed) outnumber them, so memory stays bounded by the
live records.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Sequence

import attrs

from ..clock import Clock, SystemClock
from ..errors import StoreUnavailable
from .base import Counter, Reservation, Write

#: A record: (value, expires_at or None, index names). A plain tuple of strings and numbers,
#: which Python's garbage collector stops tracking, so a million records cost no collector time.
_Record = tuple[str, "float | None", tuple[str, ...]]


@attrs.define
class MemoryStore:
    clock: Clock = attrs.field(factory=SystemClock)
    #: Seconds between purges of expired records (by the injected clock).
    purge_interval: float = 60.0
    #: Records examined per step of a purge at most, between which the event loop serves others.
    purge_batch: int = 1000
    #: Seconds one step of a purge may run at most (checked every few records).
    purge_step_seconds: float = 0.005
    _data: dict[str, _Record] = attrs.field(factory=dict, init=False)
    _indexes: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    #: (expires_at, write number, key): the write number breaks ties between records that
    #: expire at once, so the heap never compares keys.
    _expiries: list[tuple[float, int, str]] = attrs.field(factory=list, init=False)
    _writes: itertools.count[int] = attrs.field(factory=itertools.count, init=False)
    _next_purge: float = attrs.field(default=float("-inf"), init=False)
    _purger: asyncio.Task[int] | None = attrs.field(default=None, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def _open(self) -> None:
        if self._closed:
            raise StoreUnavailable("memory store is closed")
        if self._purger is None and self.clock.now() >= self._next_purge:
            self._start_purge()

    def _live(self, key: str) -> _Record | None:
        self._open()
        record = self._data.get(key)
        if record is None:
            return None
        expires_at = record[1]
        if expires_at is not None and expires_at <= self.clock.now():
            self._remove(key)
            return None
        return record

    def _remove(self, key: str) -> _Record | None:
        record = self._data.pop(key, None)
        if record is not None:
            for index in record[2]:
                members = self._indexes.get(index)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del self._indexes[index]
        return record

    def _write(self, key: str, value: str, ttl: float | None, indexes: Sequence[str]) -> None:
        self._remove(key)
        expires_at = None if ttl is None else self.clock.now() + ttl
        self._data[key] = (value, expires_at, tuple(indexes))
        for index in indexes:
            self._indexes.setdefault(index, set()).add(key)
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, next(self._writes), key))
            if len(self._expiries) > 2 * len(self._data) + 1024:
                self._rebuild_expiries()

    def _rebuild_expiries(self) -> None:
        self._expiries = [(r[1], next(self._writes), k) for k, r in self._data.items() if r[1] is not None]
        heapq.heapify(self._expiries)

    # -- purging -----------------------------------------------------------------------------

    def held_values(self) -> dict[str, str]:
        """Every record held, key to value, expired ones not yet purged included: for tests that
        check what is kept at rest."""
        return {key: record[0] for key, record in self._data.items()}

    @property
    def held_records(self) -> int:
        """Records held in memory, expired ones not yet purged included."""
        return len(self._data)

    def _start_purge(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: the next operation on one starts it
            return
        self._next_purge = self.clock.now() + self.purge_interval
        self._purger = loop.create_task(self._background_purge())

    async def _background_purge(self) -> int:
        try:
            return await self.purge()
        finally:
            self._purger = None

    def _purge_step(self, now: float) -> bool:
        """Remove expired records, at most :attr:`purge_batch` and for at most
        :attr:`purge_step_seconds`; True when nothing expired is left."""
        expiries = self._expiries
        deadline = time.perf_counter() + self.purge_step_seconds
        for done in range(1, self.purge_batch + 1):
            if not expiries or expiries[0][0] > now:
                return True
            expires_at, _, key = heapq.heappop(expiries)
            record = self._data.get(key)
            if record is not None and record[1] == expires_at:
                self._remove(key)
            if done % 64 == 0 and time.perf_counter() >= deadline:
                break
        return not expiries or expiries[0][0] > now

    async def purge(self) -> int:
        """Remove every record expired by now, :attr:`purge_batch` at a time with the event loop
        free in between; the number of records removed."""
        before = len(self._data)
        while not self._closed:
            if self._purge_step(self.clock.now()):
                break
            await asyncio.sleep(0)  # the loop serves others between batches
        return before - len(self._data)

    async def purge_finished(self) -> None:
        """Wait for a background purge in progress (if any) to finish."""
        purger = self._purger
        if purger is not None:
            await asyncio.shield(purger)

    # -- the Store protocol --------------------------------------------------------------------

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        self._open()
        self._write(key, value, ttl, indexes)

    async def get(self, key: str) -> str | None:
        record = self._live(key)
        return None if record is None else record[0]

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._remove(key) is not None

    async def take(self, key: str) -> str | None:
        record = self._live(key)
        if record is None:
            return None
        self._remove(key)
        return record[0]

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        if self._live(key) is not None:
            return False
        self._write(key, value, ttl, indexes)
        return True

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        record = self._live(key)
        if record is None:
            self._write(key, str(amount), ttl, ())
            return amount
        value = int(record[0]) + amount
        self._data[key] = (str(value), record[1], record[2])
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
        record = self._live(key)
        current = None if record is None else record[0]
        if current != expected:
            return False
        self._write(key, value, ttl, indexes)
        return True

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        records = [self._live(c.key) for c in counters]
        counts = tuple(0 if r is None else int(r[0]) for r in records)
        if any(count >= c.limit for count, c in zip(counts, counters, strict=True)):
            return Reservation(False, counts)
        for counter, record, count in zip(counters, records, counts, strict=True):
            if record is None:
                self._write(counter.key, "1", counter.ttl, ())
            else:
                self._data[counter.key] = (str(count + 1), record[1], record[2])
        return Reservation(True, tuple(count + 1 for count in counts))

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        self._open()
        if take is not None:
            if self._live(take) is None:
                return False
            self._remove(take)
        for key in release:
            record = self._live(key)
            if record is not None:
                left = int(record[0]) - 1
                if left <= 0:
                    self._remove(key)
                else:
                    self._data[key] = (str(left), record[1], record[2])
        for write in writes:
            self._write(write.key, write.value, write.ttl, write.indexes)
        return True

    async def list_index(self, index: str) -> dict[str, str]:
        self._open()
        out = {}
        for key in sorted(self._indexes.get(index, set())):
            record = self._live(key)
            if record is not None:
                out[key] = record[0]
        return out

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix``, in key order."""
        self._open()
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            record = self._live(key)
            if record is not None:
                yield key, record[0]

    async def ping(self) -> None:
        self._open()

    async def close(self) -> None:
        self._closed = True
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()


async def open_memory_store(url: str, clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)
