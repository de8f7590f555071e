"""The Store protocol: one async key-value contract, atomic on every backend.

Values are strings (callers encode with :mod:`stepup_core.serialization`). TTLs are seconds.
An expired record is never returned, whatever the backend. Every operation is atomic; the ones
the service leans on for security are ``take`` (single use), ``add`` (replay ledgers),
``incr`` (attempt and rate counters) and ``compare_and_set`` (sign counters).

Optional capabilities live in :mod:`stepup_core.store.migrations`: ``scan(prefix)`` (every
shipped backend has it; ``stepup keys rotate`` needs it) and a versioned schema (SQLite,
PostgreSQL; ``stepup migrate``).

Backends raise :class:`~stepup_core.errors.StoreUnavailable` when they cannot reach their data;
the service turns that into "step-up required" on the check path and 503 on protected routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import quote

from ..clock import Clock

#: How long a record with a logical expiry (a challenge, a grant, a method's marker) stays in
#: the store after it, so "expired" can be told from "unknown or used". The one grace period.
GRACE_SECONDS = 120.0


def make_key(*parts: str) -> str:
    """Join key parts with ``:``, escaping each part so ``("a:b", "c")`` and ``("a", "b:c")`` differ."""
    return ":".join(quote(str(p), safe="") for p in parts)


@runtime_checkable
class Store(Protocol):
    async def put(
        self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()
    ) -> None:
        """Write ``value`` (replacing any), expiring after ``ttl`` seconds (None: never). ``indexes``
        names listings (``list_index``) the record belongs to; a replacement's indexes replace the old."""

    async def get(self, key: str) -> str | None:
        """The value, or None if absent or expired."""

    async def delete(self, key: str) -> bool:
        """Remove; True if a live record was removed."""

    async def take(self, key: str) -> str | None:
        """Get and delete in one step: of many concurrent callers exactly one receives the value."""

    async def add(
        self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()
    ) -> bool:
        """Write only if no live record exists; True if written (add-if-absent)."""

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        """Add ``amount`` to an integer counter and return the new value. A new counter starts at 0
        and expires ``ttl`` seconds after its creation (a fixed window); later increments keep
        that expiry. ``get`` returns a counter as its decimal string."""

    async def compare_and_set(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        ttl: float | None = None,
        indexes: Sequence[str] = (),
    ) -> bool:
        """Write ``value`` only if the current live value equals ``expected`` (None: absent)."""

    async def list_index(self, index: str) -> dict[str, str]:
        """Every live record in ``index``, key to value."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""

    async def close(self) -> None:
        """Release connections. Idempotent; afterwards every operation raises StoreUnavailable."""


#: ``factory(url, clock)`` opens a store for a URL of the scheme it was registered under.
StoreFactory = Callable[[str, Clock], Awaitable[Store]]
