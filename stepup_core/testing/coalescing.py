"""The read-coalescing suite: a store whose ``get`` goes through a
:class:`~stepup_core.store.coalesce.ReadCoalescer` keeps every guarantee of a plain ``get``.

Subclass :class:`ReadCoalescingSuite` next to your :class:`~stepup_core.testing.stores.StoreConformanceSuite`
and give it the same ``store`` fixture (a fresh, empty store on the system clock, closed after
the test). The store must offer ``fetch_many(keys)`` (one round trip, the live value of each key
found) and route ``get`` through a coalescer that calls the store's ``fetch_many`` attribute,
made on the first ``get``: the suite wraps that attribute before the first ``get`` to count and
hold fetches. Add the backend's own outage test (the server stopped while a fetch is on its
way: every waiter gets ``StoreUnavailable``) to the subclass.

:class:`ListingCoalescingSuite` does the same for ``list_index`` through a coalescer of index
names that calls the store's ``fetch_listings(indexes)`` (one round trip, each index's live
records, key to value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest

from ..errors import StoreUnavailable

__all__ = ["FetchRecorder", "ListingCoalescingSuite", "ReadCoalescingSuite"]


class FetchRecorder:
    """Wraps a store's ``fetch_many``: records each call's keys and, while :attr:`hold` is set,
    keeps each fetch's answer (already read from the server) until :meth:`release`."""

    def __init__(self, fetch_many: Callable[[Sequence[str]], Awaitable[Mapping[str, Any]]]) -> None:
        self._fetch_many = fetch_many
        self.calls: list[list[str]] = []
        self.hold = False
        self._released = asyncio.Event()
        #: Set once a fetch has read its answer from the server.
        self.answered = asyncio.Event()

    def install(self, store: Any, attribute: str = "fetch_many") -> FetchRecorder:
        """Wrap ``store``'s ``attribute`` (``fetch_many``, or ``fetch_listings`` for listings)."""
        setattr(store, attribute, self)
        return self

    async def __call__(self, keys: Sequence[str]) -> Mapping[str, Any]:
        self.calls.append(list(keys))
        found = await self._fetch_many(keys)
        self.answered.set()
        if self.hold:
            await self._released.wait()
        return found

    def release(self) -> None:
        self.hold = False
        self._released.set()


@pytest.mark.asyncio
class ReadCoalescingSuite:
    """Concurrent ``get`` calls share round trips and still see every completed write."""

    async def test_concurrent_gets_of_distinct_and_repeated_keys_share_one_round_trip(self, store: Any) -> None:
        await asyncio.gather(*(store.put(f"k{i}", f"value {i}", ttl=300) for i in range(0, 60, 2)))
        await store.put("no-expiry", "kept")
        fetches = FetchRecorder(store.fetch_many).install(store)
        # 200 gets: 60 distinct keys (30 present, 30 absent) asked about three times each, and
        # one key without expiry asked about 20 times.
        keys = [f"k{i % 60}" for i in range(180)] + ["no-expiry"] * 20
        results = await asyncio.gather(*(store.get(key) for key in keys))
        expected = [f"value {int(key[1:])}" if key[0] == "k" and int(key[1:]) % 2 == 0 else None for key in keys[:180]]
        assert results == [*expected, *["kept"] * 20]
        assert len(fetches.calls) == 1, fetches.calls
        assert sorted(fetches.calls[0]) == sorted(set(keys))  # each distinct key fetched once

    async def test_more_gets_than_one_batch_holds_make_several_round_trips(self, store: Any) -> None:
        await asyncio.gather(*(store.put(f"k{i}", str(i), ttl=300) for i in range(0, 300, 3)))
        fetches = FetchRecorder(store.fetch_many).install(store)
        results = await asyncio.gather(*(store.get(f"k{i}") for i in range(300)))
        assert results == [str(i) if i % 3 == 0 else None for i in range(300)]
        assert sorted(len(keys) for keys in fetches.calls) == [44, 256]

    @pytest.mark.parametrize("write", ["put", "delete", "take"])
    async def test_a_get_after_a_completed_write_sees_it(self, store: Any, write: str) -> None:
        await store.put("k", "old", ttl=300)
        fetches = FetchRecorder(store.fetch_many).install(store)
        fetches.hold = True
        before = asyncio.ensure_future(store.get("k"))
        await asyncio.wait_for(fetches.answered.wait(), 10)  # a fetch has read "old" and is still open
        if write == "put":
            await store.put("k", "new", ttl=300)
        elif write == "delete":
            assert await store.delete("k") is True
        else:
            assert await store.take("k") == "old"
        after = asyncio.ensure_future(store.get("k"))
        await asyncio.sleep(0.05)
        fetches.release()
        assert await before == "old"
        assert await after == ("new" if write == "put" else None)
        assert len(fetches.calls) == 2  # the later get did not join the fetch already on its way

    async def test_a_cancelled_waiter_leaves_the_others_answered(self, store: Any) -> None:
        await asyncio.gather(*(store.put(f"k{i}", str(i), ttl=300) for i in range(20)))
        fetches = FetchRecorder(store.fetch_many).install(store)
        fetches.hold = True
        waiters = [asyncio.ensure_future(store.get(f"k{i % 10}")) for i in range(20)]
        await asyncio.wait_for(fetches.answered.wait(), 10)
        for i in (0, 3, 13):  # k3 has a second waiter, k0 another, and none is left for ...
            waiters[i].cancel()
        waiters[10].cancel()  # ... k0 once this one is gone too
        fetches.release()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        for i, result in enumerate(results):
            if i in (0, 3, 10, 13):
                assert isinstance(result, asyncio.CancelledError)
            else:
                assert result == str(i % 10)
        assert len(fetches.calls) == 1
        assert await store.get("k0") == "0"  # the store goes on serving

    async def test_closing_the_store_fails_waiting_gets_with_store_unavailable(self, store: Any) -> None:
        await store.put("k", "v", ttl=300)
        fetches = FetchRecorder(store.fetch_many).install(store)
        fetches.hold = True
        waiters = [asyncio.ensure_future(store.get(key)) for key in ("k", "k", "absent")]
        await asyncio.wait_for(fetches.answered.wait(), 10)
        await store.close()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        with pytest.raises(StoreUnavailable):
            await store.get("k")


@pytest.mark.asyncio
class ListingCoalescingSuite:
    """Concurrent ``list_index`` calls share round trips, each caller gets its own listing, and
    a listing asked for after a completed write sees it."""

    async def test_concurrent_listings_share_one_round_trip_and_each_caller_owns_its_answer(
        self, store: Any
    ) -> None:
        for user in range(8):
            for item in range(user % 3 + 1):
                await store.put(f"rec:{user}:{item}", f"v{user}.{item}", ttl=300, indexes=(f"user:{user}", "all"))
        await store.put("other", "x", indexes=("elsewhere",))
        fetches = FetchRecorder(store.fetch_listings).install(store, "fetch_listings")
        names = [f"user:{i % 10}" for i in range(40)] + ["all", "all", "none"]
        listings = await asyncio.gather(*(store.list_index(name) for name in names))
        for name, listing in zip(names, listings, strict=True):
            if name == "all":
                expected = {f"rec:{u}:{i}": f"v{u}.{i}" for u in range(8) for i in range(u % 3 + 1)}
            elif name == "none" or int(name.split(":")[1]) >= 8:
                expected = {}
            else:
                user = int(name.split(":")[1])
                expected = {f"rec:{user}:{i}": f"v{user}.{i}" for i in range(user % 3 + 1)}
            assert listing == expected, name
            assert list(listing) == sorted(listing)  # key order, as list_index answers
        assert len(fetches.calls) == 1, fetches.calls
        assert sorted(fetches.calls[0]) == sorted(set(names))  # each distinct index fetched once
        listings[0]["injected"] = "by one caller"  # callers of one batch share no dict
        assert "injected" not in listings[10] and "injected" not in await store.list_index("user:0")

    @pytest.mark.parametrize("write", ["put", "delete", "take"])
    async def test_a_listing_after_a_completed_write_sees_it(self, store: Any, write: str) -> None:
        await store.put("a", "old", ttl=300, indexes=("idx",))
        fetches = FetchRecorder(store.fetch_listings).install(store, "fetch_listings")
        fetches.hold = True
        before = asyncio.ensure_future(store.list_index("idx"))
        await asyncio.wait_for(fetches.answered.wait(), 10)  # a fetch has read "old" and is still open
        if write == "put":
            await store.put("b", "new", ttl=300, indexes=("idx",))
        elif write == "delete":
            assert await store.delete("a") is True
        else:
            assert await store.take("a") == "old"
        after = asyncio.ensure_future(store.list_index("idx"))
        await asyncio.sleep(0.05)
        fetches.release()
        assert await before == {"a": "old"}
        assert await after == ({"a": "old", "b": "new"} if write == "put" else {})
        assert len(fetches.calls) == 2  # the later listing did not join the fetch already on its way

    async def test_closing_the_store_fails_waiting_listings_with_store_unavailable(self, store: Any) -> None:
        await store.put("k", "v", ttl=300, indexes=("idx",))
        fetches = FetchRecorder(store.fetch_listings).install(store, "fetch_listings")
        fetches.hold = True
        waiters = [asyncio.ensure_future(store.list_index(name)) for name in ("idx", "idx", "none")]
        await asyncio.wait_for(fetches.answered.wait(), 10)
        await store.close()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        with pytest.raises(StoreUnavailable):
            await store.list_index("idx")
