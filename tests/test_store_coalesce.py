"""ReadCoalescer: concurrent gets of one loop turn share one fetch; errors, cancellation, close."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from stepup_core.errors import StoreUnavailable
from stepup_core.store.coalesce import DEFAULT_MAX_BATCH, ReadCoalescer


class FakeBackend:
    """Records every fetch; ``hold`` keeps a fetch open (after reading) until released."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self.data = dict(data or {})
        self.fetches: list[list[str]] = []
        self.hold: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.started = asyncio.Event()

    async def fetch_many(self, keys: Sequence[str]) -> Mapping[str, str | BaseException | None]:
        self.fetches.append(list(keys))
        found = {key: self.data[key] for key in keys if key in self.data}  # read now ...
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()  # ... answered later
        if self.fail is not None:
            raise self.fail
        return found


def closed_error() -> StoreUnavailable:
    return StoreUnavailable("test store is closed", store="test")


async def coalescer(backend: FakeBackend, **kwargs: int) -> ReadCoalescer[str]:
    return ReadCoalescer(backend.fetch_many, closed=closed_error, **kwargs)


async def test_gets_of_one_loop_turn_share_one_fetch_and_duplicates_are_fetched_once() -> None:
    backend = FakeBackend({f"k{i}": f"v{i}" for i in range(50)})
    reads = await coalescer(backend)
    keys = [f"k{i % 70}" for i in range(200)]  # 50 present, 20 absent, each asked 2 or 3 times
    results = await asyncio.gather(*(reads.get(key) for key in keys))
    assert results == [backend.data.get(key) for key in keys]
    assert len(backend.fetches) == 1
    assert sorted(backend.fetches[0]) == sorted(set(keys))


async def test_a_lone_get_is_sent_in_the_next_loop_turn() -> None:
    backend = FakeBackend({"k": "v"})
    reads = await coalescer(backend)
    answer = reads.get("k")  # queued, not sent yet
    assert backend.fetches == []
    await asyncio.sleep(0)  # one loop turn: the flush has sent it
    assert backend.fetches == [["k"]]
    assert await answer == "v"


async def test_gets_made_while_a_fetch_is_on_its_way_go_out_together_when_it_is_answered() -> None:
    backend = FakeBackend({f"k{i}": str(i) for i in range(10)})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend)
    first = reads.get("k0")
    await backend.started.wait()  # the fetch of k0 is on its way
    later = []
    for i in range(1, 10):  # asked in several loop turns while it is
        later.append(reads.get(f"k{i}"))
        await asyncio.sleep(0)
    assert backend.fetches == [["k0"]]  # none sent beside the open fetch
    backend.hold.set()
    assert await first == "0"
    assert await asyncio.gather(*later) == [str(i) for i in range(1, 10)]
    assert backend.fetches == [["k0"], [f"k{i}" for i in range(1, 10)]]


async def test_lookups_ready_when_a_fetch_is_answered_join_those_queued_meanwhile() -> None:
    backend = FakeBackend({f"k{i}": str(i) for i in range(3)})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend)
    first = reads.get("k0")
    await backend.started.wait()
    queued = reads.get("k1")  # while k0's fetch is on its way

    async def after_the_answer() -> str | None:
        await first  # resumes in the loop turn of the answer ...
        return await reads.get("k2")  # ... and joins k1, queued before

    joining = asyncio.ensure_future(after_the_answer())
    await asyncio.sleep(0)
    backend.hold.set()
    assert await queued == "1" and await joining == "2"
    assert backend.fetches == [["k0"], ["k1", "k2"]]


async def test_a_full_batch_does_not_wait_for_the_fetch_on_its_way() -> None:
    backend = FakeBackend({f"k{i}": str(i) for i in range(30)})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend, max_batch=10)
    first = reads.get("k0")
    await backend.started.wait()
    rest = [reads.get(f"k{i}") for i in range(1, 30)]  # 29 keys: two full batches and 9 more
    await asyncio.sleep(0)
    assert [len(keys) for keys in backend.fetches] == [1, 10, 10]  # the full ones went out
    backend.hold.set()
    assert await first == "0"
    assert await asyncio.gather(*rest) == [str(i) for i in range(1, 30)]
    assert [len(keys) for keys in backend.fetches] == [1, 10, 10, 9]


async def test_more_keys_than_the_cap_make_several_fetches() -> None:
    backend = FakeBackend({f"k{i}": str(i) for i in range(600)})
    reads = await coalescer(backend)  # the default cap
    results = await asyncio.gather(*(reads.get(f"k{i}") for i in range(600)))
    assert results == [str(i) for i in range(600)]
    assert sorted(len(f) for f in backend.fetches) == [88, DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH]
    assert DEFAULT_MAX_BATCH == 256


async def test_gets_after_a_flush_started_go_in_the_next_fetch() -> None:
    backend = FakeBackend({"k": "old"})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend)
    first = asyncio.ensure_future(reads.get("k"))
    await backend.started.wait()  # the first fetch has read "old" and is still open
    backend.data["k"] = "new"  # a write completes
    second = asyncio.ensure_future(reads.get("k"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    backend.hold.set()
    assert await first == "old"
    assert await second == "new"  # not joined to the fetch already on its way
    assert backend.fetches == [["k"], ["k"]]


async def test_nothing_is_cached_across_flushes() -> None:
    backend = FakeBackend({"k": "1"})
    reads = await coalescer(backend)
    assert await reads.get("k") == "1"
    del backend.data["k"]
    assert await reads.get("k") is None
    backend.data["k"] = "2"
    assert await reads.get("k") == "2"
    assert len(backend.fetches) == 3


async def test_a_fetch_error_reaches_every_waiter_of_the_batch() -> None:
    backend = FakeBackend({"k": "v"})
    backend.fail = StoreUnavailable("down", store="test")
    reads = await coalescer(backend)
    results = await asyncio.gather(*(reads.get(f"k{i % 3}") for i in range(30)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert len(backend.fetches) == 1
    backend.fail = None  # the coalescer keeps working afterwards
    assert await reads.get("k") == "v"


async def test_an_error_for_one_key_reaches_that_keys_waiters_alone() -> None:
    backend = FakeBackend({"a": "1"})
    broken = StoreUnavailable("refused for this key", store="test")

    async def fetch_many(keys: Sequence[str]) -> Mapping[str, str | BaseException | None]:
        found = await backend.fetch_many(keys)
        return {**found, "bad": broken}

    reads: ReadCoalescer[str] = ReadCoalescer(fetch_many, closed=closed_error)
    results = await asyncio.gather(reads.get("a"), reads.get("bad"), reads.get("bad"), reads.get("z"),
                                   return_exceptions=True)
    assert results[0] == "1"
    assert results[1] is broken and results[2] is broken
    assert results[3] is None


async def test_a_cancelled_waiter_does_not_break_the_batch() -> None:
    backend = FakeBackend({f"k{i}": str(i) for i in range(10)})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend)
    tasks = [asyncio.ensure_future(reads.get(f"k{i}")) for i in range(10)]
    same_key = asyncio.ensure_future(reads.get("k3"))
    await backend.started.wait()
    tasks[3].cancel()  # in flight: its key's other waiter is still answered
    tasks[5].cancel()
    await asyncio.sleep(0)
    backend.hold.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i not in (3, 5)] == [str(i) for i in range(10) if i not in (3, 5)]
    assert await same_key == "3"
    assert len(backend.fetches) == 1


async def test_a_key_whose_waiters_were_all_cancelled_before_the_flush_is_not_fetched() -> None:
    backend = FakeBackend({"a": "1", "b": "2"})
    reads = await coalescer(backend)
    a = reads.get("a")
    b = reads.get("b")
    b.cancel()  # before the flush
    assert await a == "1"
    assert backend.fetches == [["a"]]
    with pytest.raises(asyncio.CancelledError):
        await b


async def test_close_fails_queued_and_in_flight_waiters_and_later_gets() -> None:
    backend = FakeBackend({"a": "1"})
    backend.hold = asyncio.Event()
    reads = await coalescer(backend)
    in_flight = [asyncio.ensure_future(reads.get("a")) for _ in range(5)]
    await backend.started.wait()
    queued = asyncio.ensure_future(reads.get("b"))
    await asyncio.sleep(0)  # "b" is queued behind the open fetch
    await reads.close()
    for task in [*in_flight, queued]:
        with pytest.raises(StoreUnavailable, match="closed"):
            await task
    with pytest.raises(StoreUnavailable, match="closed"):
        await reads.get("a")
    assert reads.closed
    await reads.close()  # idempotent
    assert backend.fetches == [["a"]]


async def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        ReadCoalescer(FakeBackend().fetch_many, closed=closed_error, max_batch=0)


def test_a_store_keeps_one_coalescer_per_running_loop() -> None:
    backend_data = {"k": "v"}

    async def fetch_many(keys: Sequence[str]) -> Mapping[str, str | BaseException | None]:
        return {key: backend_data[key] for key in keys if key in backend_data}

    async def first_loop() -> ReadCoalescer[str]:
        reads = ReadCoalescer.serving(None, fetch_many, closed=closed_error)
        assert ReadCoalescer.serving(reads, fetch_many, closed=closed_error) is reads
        assert await reads.get("k") == "v"
        return reads

    async def second_loop(old: ReadCoalescer[str]) -> None:
        reads = ReadCoalescer.serving(old, fetch_many, closed=closed_error)
        assert reads is not old and reads.loop is asyncio.get_running_loop()
        assert await reads.get("k") == "v"

    old = asyncio.run(first_loop())
    asyncio.run(second_loop(old))
