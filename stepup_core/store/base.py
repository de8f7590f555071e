"""The Store protocol: one async key-value contract, atomic on every backend.

Values are strings (callers encode with :mod:`stepup_core.serialization`). TTLs are seconds.
An expired record is never returned, whatever the backend. Every operation is atomic; the ones
the service leans on for security are ``take`` (single use), ``add`` (replay ledgers),
``incr`` (attempt and rate counters), ``compare_and_set`` (sign counters), and the two that
frame a verification: ``reserve`` (places in the attempt budget and the lockout, both or
neither, before a guess is evaluated) and ``settle`` (after a success, in one step: use the
challenge up, give the places back, write the grant).

Optional capabilities live in :mod:`stepup_core.store.migrations`: ``scan(prefix)`` (every
shipped backend has it; ``stepup keys rotate`` needs it) and a versioned schema (SQLite,
PostgreSQL; ``stepup migrate``).

Backends raise :class:`~stepup_core.errors.StoreUnavailable` when they cannot reach their data;
the service turns that into "step-up required" on the check path and 503 on protected routes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import attrs

from ..clock import Clock

#: Characters ``quote`` leaves alone: a part made only of these needs no escaping.
_PLAIN_PART = re.compile(r"[A-Za-z0-9_.~-]*")
#: How long a record with a logical expiry (a challenge, a grant, a method's marker) stays in
#: the store after it, so "expired" can be told from "unknown or used". The one grace period.
GRACE_SECONDS = 120.0


def make_key(*parts: str) -> str:
    """Join key parts with ``:``, escaping each part so ``("a:b", "c")`` and ``("a", "b:c")`` differ."""
    return ":".join(p if _PLAIN_PART.fullmatch(p) else quote(p, safe="") for p in map(str, parts))


@attrs.frozen
class Counter:
    """A counter with a ceiling, for :meth:`Store.reserve`."""

    key: str
    #: The counter never goes above this.
    limit: int
    #: Seconds a counter created by the reservation lives (a fixed window, as with ``incr``).
    ttl: float


@attrs.frozen
class Reservation:
    """What :meth:`Store.reserve` did."""

    #: True when every counter took its place; False when one was full and none changed.
    granted: bool
    #: Each counter's value, in the order asked: after the reservation when granted, as found
    #: (0 for an absent counter) when refused.
    counts: tuple[int, ...]


@attrs.frozen
class Write:
    """One record for :meth:`Store.settle` to write, as ``put`` would."""

    key: str
    value: str
    ttl: float | None = None
    indexes: tuple[str, ...] = ()


@runtime_checkable
class Store(Protocol):
    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        """Write ``value`` (replacing any), expiring after ``ttl`` seconds (None: never). ``indexes``
        names listings (``list_index``) the record belongs to; a replacement's indexes replace the old."""

    async def get(self, key: str) -> str | None:
        """The value, or None if absent or expired."""

    async def delete(self, key: str) -> bool:
        """Remove; True if a live record was removed."""

    async def take(self, key: str) -> str | None:
        """Get and delete in one step: of many concurrent callers exactly one receives the value."""

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
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

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        """Take one place in every counter, or in none, in one atomic step.

        When each counter is below its ``limit``, add 1 to each (a new counter starts at 0 and
        expires ``ttl`` seconds after its creation) and answer granted with the new values;
        when any is at or above its limit, change nothing and answer refused with the values
        found. The keys are distinct. A record that is not a counter raises ValueError."""

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        """In one atomic step: take the record ``take`` (when given; if it is absent or expired
        nothing at all happens and the answer is False), give one place back in each live
        counter of ``release`` (a counter that reaches 0 is removed, so its window starts again
        with the next reservation; an absent or expired one stays absent) and write every
        record of ``writes`` as ``put`` would. True when done."""

    async def list_index(self, index: str) -> dict[str, str]:
        """Every live record in ``index``, key to value."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""

    async def close(self) -> None:
        """Release connections. Idempotent; afterwards every operation raises StoreUnavailable."""


#: ``factory(url, clock)`` opens a store for a URL of the scheme it was registered under.
StoreFactory = Callable[[str, Clock], Awaitable[Store]]
