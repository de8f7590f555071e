"""How long requests wait while a store clears a million expired tokens.

For each store: mint ``--tokens`` elevated-token records (as ``TokenStore.mint`` writes them: a
grant under its hash, in its session's and its user's index), move the store's clock past their
expiry, then time a stream of writes (fresh tokens) and reads (a live token) while the store
sweeps: each request is due 5 ms after the previous answer, and its wait runs from then to its
answer, so time spent waiting for a busy event loop counts as well as time in the store. The
clock is a manual one, so "expired" is exact and nothing expires by itself during the fill.

The SQLite file is filled in one transaction straight into the store's tables (a million
``synchronous = FULL`` transactions would take hours), then checkpointed and synced as a
database in service would be; the memory store is filled through its own ``put``. For SQLite
the run also reports the largest size its write-ahead log reached. The run ends when the store
holds no expired record any more, or after ``--max-seconds``. Before the clock moves, the same
writes run on the SQLite file for ``--baseline-seconds`` with nothing to sweep: the waits the
machine's disk alone causes (a synced commit on a shared disk now and then takes a while).

    python benchmarks/expiry.py [--stores memory,sqlite] [--tokens 1000000] [--max-seconds 120]
                                [--baseline-seconds 30]

Target: the longest write wait <= 100 ms on every store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from stepup_core.clock import ManualClock
from stepup_core.store.base import make_key

TARGET_MS = 100.0
T0 = 1_900_000_000.0
#: The filled tokens live this long (by the manual clock); the run starts this much later.
FILL_TTL = 600.0
USERS = 100_000
#: A token written before the clock moves, read throughout (it outlives the run).
LIVE_KEY = "grant:live"
#: Seconds between the end of one timed request and the next.
PACE = 0.005


def _grant(i: int) -> tuple[str, str, tuple[str, ...]]:
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    user = f"user-{i % USERS}"
    session = f"session-{i % USERS}"
    value = (
        f'{{"tokenHash":"{digest}","userId":"{user}","sessionId":"{session}","scopes":["user:update"],'
        f'"method":"totp","issuedAt":{T0},"expiresAt":{T0 + FILL_TTL},"singleUse":false,'
        f'"credentialId":"cred_{i % USERS}"}}'
    )
    indexes = (make_key("grants-session", user, session), make_key("grants-user", user))
    return "grant:" + digest, value, indexes


@attrs.define
class Result:
    store: str
    filled: int
    fill_seconds: float
    writes: list[float] = attrs.field(factory=list)
    reads: list[float] = attrs.field(factory=list)
    swept_after: float | None = None
    expired_left: int = 0
    ran: float = 0.0
    #: SQLite: the largest size of the write-ahead log seen (sampled with each count).
    wal_peak: int | None = None
    #: SQLite: write waits over ``--baseline-seconds`` before anything expired (no sweep).
    baseline: list[float] | None = None


async def _drive(
    result: Result,
    store: Any,
    expired_left: Callable[[], Awaitable[int]],
    max_seconds: float,
    clock: ManualClock,
) -> None:
    live_key = LIVE_KEY
    started = time.perf_counter()
    done = asyncio.Event()

    # A request's wait is measured from the moment it was due (5 ms after the previous one
    # ended) to its answer: time spent waiting for the event loop counts as well as the call.
    async def writer() -> None:
        n = 0
        while not done.is_set():
            n += 1
            due = time.perf_counter() + PACE
            await asyncio.sleep(PACE)
            await store.put(f"grant:fresh-{n}", "fresh", ttl=FILL_TTL, indexes=("grants-user:fresh",))
            result.writes.append(time.perf_counter() - due)

    async def reader() -> None:
        while not done.is_set():
            due = time.perf_counter() + PACE
            await asyncio.sleep(PACE)
            value = await store.get(live_key)
            result.reads.append(time.perf_counter() - due)
            assert value == "live"

    async def watch() -> None:
        while time.perf_counter() - started < max_seconds:
            await asyncio.sleep(0.5)
            left = await expired_left()
            result.expired_left = left
            if left == 0:
                result.swept_after = time.perf_counter() - started
                break
        done.set()

    await asyncio.gather(writer(), reader(), watch())
    result.ran = time.perf_counter() - started


async def _memory(tokens: int, max_seconds: float) -> Result:
    from stepup_core.store.memory import MemoryStore

    clock = ManualClock(T0)
    store = MemoryStore(clock=clock)
    began = time.perf_counter()
    for i in range(tokens):
        key, value, indexes = _grant(i)
        await store.put(key, value, ttl=FILL_TTL, indexes=indexes)
    result = Result("memory", tokens, time.perf_counter() - began)
    await store.put(LIVE_KEY, "live", ttl=100 * FILL_TTL)
    clock.advance(10 * FILL_TTL)

    async def expired_left() -> int:
        # Everything but the live token and the fresh writes (which the clock never expires);
        # counted without walking a million records on the loop being measured.
        return max(0, len(store._data) - 1 - len(result.writes))

    gc.collect()
    await _drive(result, store, expired_left, max_seconds, clock)
    await store.close()
    return result


async def _sqlite(tokens: int, max_seconds: float, workdir: Path, baseline_seconds: float) -> Result:
    from stepup_core.store.sqlite import SQLiteStore

    path = workdir / "expiry.sqlite3"
    clock = ManualClock(T0)
    store = await SQLiteStore.open(str(path), clock)
    began = time.perf_counter()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # the fill only: the store keeps FULL
        batch = 50_000
        for first in range(0, tokens, batch):
            rows = [_grant(i) for i in range(first, min(first + batch, tokens))]
            conn.executemany(
                "INSERT INTO records (key, value, expires_at) VALUES (?, ?, ?)",
                [(k, v, T0 + FILL_TTL) for k, v, _ in rows],
            )
            conn.executemany(
                "INSERT INTO record_indexes (index_name, key) VALUES (?, ?)",
                [(name, k) for k, _, names in rows for name in names],
            )
        conn.commit()
        # As a database in service would be: its write-ahead log checkpointed, not holding the
        # whole fill for the store's first commit to copy back, and the file synced (as the
        # store's own checkpoints sync it), not a gigabyte waiting in the page cache.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    result = Result("sqlite", tokens, time.perf_counter() - began)
    await store.put(LIVE_KEY, "live", ttl=100 * FILL_TTL)
    if baseline_seconds > 0:
        # The same requests on the same file before anything expired: what the machine's disk
        # costs them with nothing to sweep, to read the sweep's own effect against.
        before = Result("sqlite", 0, 0.0)

        async def nothing_expired() -> int:
            return 1

        await _drive(before, store, nothing_expired, baseline_seconds, clock)
        result.baseline = before.writes
    clock.advance(10 * FILL_TTL)
    counter = sqlite3.connect(path, check_same_thread=False)

    wal = Path(f"{path}-wal")

    def count_expired(now: float) -> int:
        with contextlib.suppress(OSError):
            result.wal_peak = max(result.wal_peak or 0, wal.stat().st_size)
        row = counter.execute(
            "SELECT count(*) FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        ).fetchone()
        return int(row[0])

    async def expired_left() -> int:  # counted on a thread, not on the loop being measured
        return await asyncio.to_thread(count_expired, clock.now())

    try:
        await _drive(result, store, expired_left, max_seconds, clock)
    finally:
        counter.close()
        await store.close()
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _report(result: Result) -> bool:
    writes, reads = sorted(result.writes), sorted(result.reads)
    worst = writes[-1] if writes else float("inf")
    print(f"{result.store}: {result.filled} expired tokens (filled in {result.fill_seconds:.1f} s)")
    if result.swept_after is not None:
        print(f"  every expired record gone after {result.swept_after:.1f} s")
    else:
        print(f"  after {result.ran:.1f} s, {result.expired_left} expired records are still held")
    if result.baseline:
        base = sorted(result.baseline)
        print(
            f"  before anything expired (no sweep): writes {len(base)}, median {_ms(statistics.median(base))} ms, "
            f"p99 {_ms(base[min(len(base) - 1, int(len(base) * 0.99))])} ms, longest {_ms(base[-1])} ms"
        )
    for name, values in (("write", writes), ("read", reads)):
        if not values:
            print(f"  {name}s: none finished")
            continue
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(
            f"  {name}s: {len(values)}, median {_ms(statistics.median(values))} ms, p99 {_ms(p99)} ms, "
            f"longest {_ms(values[-1])} ms"
        )
    if result.wal_peak is not None:
        print(f"  write-ahead log at most {result.wal_peak / 1e6:.1f} MB")
    ok = worst * 1000 <= TARGET_MS
    print(f"  longest write wait {_ms(worst)} ms (target <= {TARGET_MS:g} ms: {'met' if ok else 'MISSED'})")
    return ok


async def _main(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    print(
        f"expiry benchmark: {args.tokens} tokens expire, then writes and reads (each due 5 ms after the last "
        f"answer; the wait is from due to answered) while the store sweeps (at most {args.max_seconds:g} s); "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    workdir = Path(tempfile.mkdtemp(prefix="stepup-bench-expiry-"))
    ok = True
    try:
        for kind in stores:
            if kind == "memory":
                result = await _memory(args.tokens, args.max_seconds)
            elif kind == "sqlite":
                result = await _sqlite(args.tokens, args.max_seconds, workdir, args.baseline_seconds)
            else:
                raise SystemExit(f"unknown store {kind!r}: memory or sqlite")
            print()
            ok &= _report(result)
            gc.collect()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok or not args.strict else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=30.0,
        help="SQLite: time the same writes this long before anything expires (0: skip)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
