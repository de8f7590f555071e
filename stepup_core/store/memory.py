"""In-process store for tests and single-process development. Not shared, not persistent.

Every operation runs without awaiting in between, so on one event loop each is atomic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import attrs

from ..clock import Clock, SystemClock
from ..errors import StoreUnavailable


@attrs.define
class _Record:
    value: str
    expires_at: float | None
    indexes: tuple[str, ...] = ()


@attrs.define
class MemoryStore:
    clock: Clock = attrs.field(factory=SystemClock)
    _data: dict[str, _Record] = attrs.field(factory=dict, init=False)
    _indexes: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def _open(self) -> None:
        if self._closed:
            raise StoreUnavailable("memory store is closed")

    def _live(self, key: str) -> _Record | None:
        self._open()
        record = self._data.get(key)
        if record is None:
            return None
        if record.expires_at is not None and record.expires_at <= self.clock.now():
            self._remove(key)
            return None
        return record

    def _remove(self, key: str) -> _Record | None:
        record = self._data.pop(key, None)
        if record is not None:
            for index in record.indexes:
                members = self._indexes.get(index)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del self._indexes[index]
        return record

    def _write(self, key: str, value: str, ttl: float | None, indexes: Sequence[str]) -> None:
        self._remove(key)
        expires_at = None if ttl is None else self.clock.now() + ttl
        self._data[key] = _Record(value, expires_at, tuple(indexes))
        for index in indexes:
            self._indexes.setdefault(index, set()).add(key)

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        self._open()
        self._write(key, value, ttl, indexes)

    async def get(self, key: str) -> str | None:
        record = self._live(key)
        return None if record is None else record.value

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._remove(key) is not None

    async def take(self, key: str) -> str | None:
        record = self._live(key)
        if record is None:
            return None
        self._remove(key)
        return record.value

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
        record.value = str(int(record.value) + amount)
        return int(record.value)

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
        current = None if record is None else record.value
        if current != expected:
            return False
        self._write(key, value, ttl, indexes)
        return True

    async def list_index(self, index: str) -> dict[str, str]:
        self._open()
        out = {}
        for key in sorted(self._indexes.get(index, set())):
            record = self._live(key)
            if record is not None:
                out[key] = record.value
        return out

    async def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix``, in key order."""
        self._open()
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            record = self._live(key)
            if record is not None:
                yield key, record.value

    async def ping(self) -> None:
        self._open()

    async def close(self) -> None:
        self._closed = True


async def open_memory_store(url: str, clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)
