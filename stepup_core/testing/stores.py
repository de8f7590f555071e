"""The store conformance suite: one set of tests every store backend must pass.

Subclass :class:`StoreConformanceSuite` in your backend's tests and provide an async ``store``
fixture that yields a fresh, empty store running on real time (``SystemClock``; the expiry tests
sleep for a fraction of a second, so a backend with native TTLs such as Redis is tested as it
runs in production) and closes it afterwards::

    # tests/test_my_store.py
    import pytest

    from stepup_core.clock import SystemClock
    from stepup_core.testing.stores import StoreConformanceSuite
    from my_backend import open_my_store


    class TestMyStore(StoreConformanceSuite):
        @pytest.fixture
        async def store(self):
            store = await open_my_store("mystore://localhost/test", SystemClock())
            yield store
            await store.close()

With pytest-asyncio in ``asyncio_mode = "auto"`` a plain ``@pytest.fixture`` async generator is
enough; in strict mode decorate the fixture with ``@pytest_asyncio.fixture`` instead (the test
methods here already carry the ``asyncio`` mark). Every test in the suite then runs against your
backend; add backend-specific tests (persistence, outages) to the same class.

Tunables: :attr:`StoreConformanceSuite.short_ttl` (the TTL of records meant to expire during a
test) and :attr:`StoreConformanceSuite.expiry_wait` (how long a test sleeps to see them expire).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import pytest

from ..errors import StoreUnavailable
from ..store.base import Counter, Reservation, Store, Write, make_key

__all__ = ["RecordingStore", "StoreConformanceSuite", "StoreOperation"]

#: 64 KiB of mixed text, every character a single byte in UTF-8 except a tail of wider ones.
_LARGE_VALUE = ("0123456789abcdef" * 4096)[: 64 * 1024 - 16] + "ä€😀" * 2 + "end."


@attrs.frozen
class StoreOperation:
    """One call a :class:`RecordingStore` passed on: the operation's name and the keys it
    read (``reads``) and wrote (``writes``)."""

    name: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


@attrs.define
class RecordingStore:
    """A store that records every operation before passing it to ``inner``: tests count the
    store operations a flow costs (``operations``, cleared with :meth:`clear`)."""

    inner: Any
    operations: list[StoreOperation] = attrs.field(factory=list)

    def clear(self) -> None:
        self.operations.clear()

    @property
    def write_count(self) -> int:
        return sum(1 for op in self.operations if op.writes)

    def _note(self, name: str, reads: Sequence[str] = (), writes: Sequence[str] = ()) -> None:
        self.operations.append(StoreOperation(name, tuple(reads), tuple(writes)))

    async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()) -> None:
        self._note("put", writes=[key])
        await self.inner.put(key, value, ttl=ttl, indexes=indexes)

    async def get(self, key: str) -> str | None:
        self._note("get", reads=[key])
        return await self.inner.get(key)  # type: ignore[no-any-return]

    async def delete(self, key: str) -> bool:
        self._note("delete", reads=[key], writes=[key])
        return await self.inner.delete(key)  # type: ignore[no-any-return]

    async def take(self, key: str) -> str | None:
        self._note("take", reads=[key], writes=[key])
        return await self.inner.take(key)  # type: ignore[no-any-return]

    async def add(self, key: str, value: str, *, ttl: float | None, indexes: Sequence[str] = ()) -> bool:
        self._note("add", reads=[key], writes=[key])
        return await self.inner.add(key, value, ttl=ttl, indexes=indexes)  # type: ignore[no-any-return]

    async def incr(self, key: str, *, ttl: float, amount: int = 1) -> int:
        self._note("incr", reads=[key], writes=[key])
        return await self.inner.incr(key, ttl=ttl, amount=amount)  # type: ignore[no-any-return]

    async def compare_and_set(
        self, key: str, expected: str | None, value: str, *, ttl: float | None = None, indexes: Sequence[str] = ()
    ) -> bool:
        self._note("compare_and_set", reads=[key], writes=[key])
        return await self.inner.compare_and_set(  # type: ignore[no-any-return]
            key, expected, value, ttl=ttl, indexes=indexes
        )

    async def reserve(self, counters: Sequence[Counter]) -> Reservation:
        keys = [c.key for c in counters]
        self._note("reserve", reads=keys, writes=keys)
        return await self.inner.reserve(counters)  # type: ignore[no-any-return]

    async def settle(
        self, *, take: str | None = None, release: Sequence[str] = (), writes: Sequence[Write] = ()
    ) -> bool:
        touched = ([take] if take is not None else []) + list(release)
        self._note("settle", reads=touched, writes=touched + [w.key for w in writes])
        return await self.inner.settle(take=take, release=release, writes=writes)  # type: ignore[no-any-return]

    async def list_index(self, index: str) -> dict[str, str]:
        self._note("list_index", reads=[index])
        return await self.inner.list_index(index)  # type: ignore[no-any-return]

    async def ping(self) -> None:
        self._note("ping")
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:  # a backend's own extras (scan, sweep ...)
        return getattr(self.inner, name)


@pytest.mark.asyncio
class StoreConformanceSuite:
    """Behaviour every :class:`~stepup_core.store.base.Store` backend shares.

    Subclasses provide the ``store`` fixture (see the module docstring).
    """

    #: TTL in seconds of records that must expire while a test runs.
    short_ttl: ClassVar[float] = 0.3
    #: Seconds a test waits, from the write, before it expects a short-TTL record to be gone.
    expiry_wait: ClassVar[float] = 0.45
    #: A TTL no test outlives.
    long_ttl: ClassVar[float] = 300.0

    async def _sleep_until(self, started: float, seconds: float) -> None:
        await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))

    # ----------------------------------------------------------------------------------------
    # put / get / delete
    # ----------------------------------------------------------------------------------------

    async def test_every_operation_on_a_closed_store_raises_store_unavailable(self, store: Store) -> None:
        await store.put("k", "v")
        await store.close()
        for operation in (
            store.get("k"),
            store.put("k", "v"),
            store.take("k"),
            store.delete("k"),
            store.add("k", "v", ttl=None),
            store.incr("c", ttl=10),
            store.compare_and_set("k", None, "v"),
            store.reserve([Counter("c", 5, 10)]),
            store.settle(release=["c"], writes=[Write("k", "v")]),
            store.list_index("idx"),
            store.ping(),
        ):
            with pytest.raises(StoreUnavailable, match="is closed"):
                await operation
        await store.close()  # closing again is harmless

    async def test_get_of_a_missing_key_is_none(self, store: Store) -> None:
        assert await store.get("missing") is None

    async def test_put_then_get_returns_the_value(self, store: Store) -> None:
        await store.put("k", "v1")
        assert await store.get("k") == "v1"

    async def test_put_replaces_the_previous_value(self, store: Store) -> None:
        await store.put("k", "v1", ttl=self.long_ttl)
        await store.put("k", "v2", ttl=self.long_ttl)
        assert await store.get("k") == "v2"

    async def test_empty_string_is_a_value_not_an_absence(self, store: Store) -> None:
        await store.put("k", "")
        assert await store.get("k") == ""
        assert await store.add("k", "other", ttl=None) is False
        assert await store.take("k") == ""
        assert await store.get("k") is None

    async def test_delete_reports_whether_a_live_record_was_removed(self, store: Store) -> None:
        assert await store.delete("k") is False
        await store.put("k", "v", ttl=self.long_ttl)
        assert await store.delete("k") is True
        assert await store.get("k") is None
        assert await store.delete("k") is False

    async def test_keys_are_independent(self, store: Store) -> None:
        await store.put("a", "1")
        await store.put("b", "2")
        await store.delete("a")
        assert await store.get("a") is None
        assert await store.get("b") == "2"

    async def test_ping_succeeds_on_a_working_store(self, store: Store) -> None:
        await store.ping()  # raises StoreUnavailable when the backend cannot be reached

    async def test_close_is_idempotent(self, store: Store) -> None:
        await store.close()
        await store.close()

    # ----------------------------------------------------------------------------------------
    # take: single use
    # ----------------------------------------------------------------------------------------

    async def test_take_returns_the_value_once(self, store: Store) -> None:
        await store.put("k", "secret", ttl=self.long_ttl)
        assert await store.take("k") == "secret"
        assert await store.take("k") is None
        assert await store.get("k") is None

    async def test_take_of_a_missing_key_is_none(self, store: Store) -> None:
        assert await store.take("missing") is None

    async def test_100_concurrent_takes_have_exactly_one_winner(self, store: Store) -> None:
        await store.put("token", "grant", ttl=self.long_ttl)
        results = await asyncio.gather(*(store.take("token") for _ in range(100)))
        assert results.count("grant") == 1
        assert results.count(None) == 99
        assert await store.get("token") is None

    async def test_concurrent_take_and_delete_remove_the_record_once(self, store: Store) -> None:
        await store.put("k", "v", ttl=self.long_ttl)
        results: list[Any] = await asyncio.gather(*(store.take("k") if i % 2 else store.delete("k") for i in range(50)))
        taken = [r for r in results if r == "v"]
        deleted = [r for r in results if r is True]
        assert len(taken) + len(deleted) == 1

    async def test_concurrent_deletes_report_one_removal(self, store: Store) -> None:
        await store.put("k", "v")
        results = await asyncio.gather(*(store.delete("k") for _ in range(50)))
        assert results.count(True) == 1

    # ----------------------------------------------------------------------------------------
    # add: add-if-absent (replay ledgers)
    # ----------------------------------------------------------------------------------------

    async def test_add_writes_only_when_absent(self, store: Store) -> None:
        assert await store.add("nonce", "first", ttl=self.long_ttl) is True
        assert await store.add("nonce", "second", ttl=self.long_ttl) is False
        assert await store.get("nonce") == "first"

    async def test_add_succeeds_again_after_delete(self, store: Store) -> None:
        assert await store.add("nonce", "1", ttl=None) is True
        assert await store.delete("nonce") is True
        assert await store.add("nonce", "2", ttl=None) is True
        assert await store.get("nonce") == "2"

    async def test_concurrent_adds_have_exactly_one_winner(self, store: Store) -> None:
        results = await asyncio.gather(*(store.add("step", f"instance-{i}", ttl=self.long_ttl) for i in range(100)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert await store.get("step") == f"instance-{winner}"

    async def test_add_with_indexes_lists_the_record(self, store: Store) -> None:
        assert await store.add("k", "v", ttl=self.long_ttl, indexes=["idx"]) is True
        assert await store.list_index("idx") == {"k": "v"}
        assert await store.add("k", "w", ttl=self.long_ttl, indexes=["other"]) is False
        assert await store.list_index("other") == {}

    # ----------------------------------------------------------------------------------------
    # incr: counters with a fixed window
    # ----------------------------------------------------------------------------------------

    async def test_incr_starts_at_the_amount_and_adds(self, store: Store) -> None:
        assert await store.incr("c", ttl=self.long_ttl) == 1
        assert await store.incr("c", ttl=self.long_ttl) == 2
        assert await store.incr("c", ttl=self.long_ttl, amount=5) == 7
        assert await store.incr("c", ttl=self.long_ttl, amount=-10) == -3
        assert await store.incr("fresh", ttl=self.long_ttl, amount=4) == 4

    async def test_get_returns_a_counter_as_its_decimal_string(self, store: Store) -> None:
        await store.incr("c", ttl=self.long_ttl, amount=41)
        await store.incr("c", ttl=self.long_ttl)
        assert await store.get("c") == "42"

    async def test_1000_concurrent_increments_count_exactly(self, store: Store) -> None:
        results = await asyncio.gather(*(store.incr("attempts", ttl=self.long_ttl) for _ in range(1000)))
        assert sorted(results) == list(range(1, 1001))
        assert await store.get("attempts") == "1000"

    async def test_a_deleted_counter_starts_again(self, store: Store) -> None:
        await store.incr("c", ttl=self.long_ttl, amount=3)
        assert await store.delete("c") is True
        assert await store.incr("c", ttl=self.long_ttl) == 1

    # ----------------------------------------------------------------------------------------
    # reserve / settle
    # ----------------------------------------------------------------------------------------

    async def test_reserve_takes_a_place_in_every_counter(self, store: Store) -> None:
        counters = [Counter("budget", 3, self.long_ttl), Counter("lockout", 10, self.long_ttl)]
        first = await store.reserve(counters)
        assert first.granted and first.counts == (1, 1)
        await store.incr("lockout", ttl=self.long_ttl, amount=4)
        second = await store.reserve(counters)
        assert second.granted and second.counts == (2, 6)
        assert await store.get("budget") == "2"

    async def test_reserve_refuses_when_any_counter_is_full_and_changes_none(self, store: Store) -> None:
        counters = [Counter("budget", 5, self.long_ttl), Counter("lockout", 2, self.long_ttl)]
        await store.incr("lockout", ttl=self.long_ttl, amount=2)
        refused = await store.reserve(counters)
        assert not refused.granted and refused.counts == (0, 2)
        assert await store.get("budget") is None
        assert await store.get("lockout") == "2"

    async def test_concurrent_reservations_never_overrun_a_limit(self, store: Store) -> None:
        counters = [Counter("budget", 5, self.long_ttl), Counter("lockout", 7, self.long_ttl)]
        results = await asyncio.gather(*(store.reserve(counters) for _ in range(50)))
        granted = [r for r in results if r.granted]
        assert len(granted) == 5
        assert sorted(r.counts[0] for r in granted) == [1, 2, 3, 4, 5]
        assert await store.get("budget") == "5"
        assert await store.get("lockout") == "5"

    async def test_a_reserved_counter_expires_after_its_window(self, store: Store) -> None:
        started = time.monotonic()
        assert (await store.reserve([Counter("window", 1, self.short_ttl)])).granted
        assert not (await store.reserve([Counter("window", 1, self.short_ttl)])).granted
        await self._sleep_until(started, self.expiry_wait)
        again = await store.reserve([Counter("window", 1, self.short_ttl)])
        assert again.granted and again.counts == (1,)

    async def test_reserve_on_a_record_that_is_not_a_counter_is_a_value_error(self, store: Store) -> None:
        await store.put("text", "not a number", ttl=self.long_ttl)
        with pytest.raises(ValueError):
            await store.reserve([Counter("text", 5, self.long_ttl)])

    async def test_settle_takes_releases_and_writes_in_one_step(self, store: Store) -> None:
        await store.put("challenge", "c", ttl=self.long_ttl, indexes=["open"])
        await store.incr("lockout", ttl=self.long_ttl, amount=3)
        await store.incr("budget", ttl=self.long_ttl, amount=1)
        done = await store.settle(
            take="challenge",
            release=["lockout", "budget", "absent"],
            writes=[
                Write("grant", "g", self.long_ttl, ("session", "user")),
                Write("last-used", "42", None, ("user",)),
            ],
        )
        assert done is True
        assert await store.get("challenge") is None
        assert await store.list_index("open") == {}
        assert await store.get("lockout") == "2"
        assert await store.get("budget") is None  # back to zero: gone, its window starts again
        assert await store.get("absent") is None
        assert await store.list_index("session") == {"grant": "g"}
        assert await store.list_index("user") == {"grant": "g", "last-used": "42"}
        assert (await store.reserve([Counter("budget", 1, self.long_ttl)])).counts == (1,)

    async def test_settle_without_its_record_to_take_does_nothing(self, store: Store) -> None:
        await store.incr("lockout", ttl=self.long_ttl, amount=3)
        done = await store.settle(take="gone", release=["lockout"], writes=[Write("grant", "g", self.long_ttl)])
        assert done is False
        assert await store.get("lockout") == "3"
        assert await store.get("grant") is None

    async def test_concurrent_settles_take_a_record_once(self, store: Store) -> None:
        await store.put("challenge", "c", ttl=self.long_ttl)
        results = await asyncio.gather(
            *(
                store.settle(take="challenge", writes=[Write(f"grant-{i}", "g", self.long_ttl, ("grants",))])
                for i in range(50)
            )
        )
        assert results.count(True) == 1
        assert len(await store.list_index("grants")) == 1

    async def test_settle_without_a_take_releases_and_writes(self, store: Store) -> None:
        await store.incr("c", ttl=self.long_ttl, amount=2)
        assert await store.settle(release=["c"]) is True
        assert await store.get("c") == "1"
        assert await store.settle(writes=[Write("k", "v")]) is True
        assert await store.get("k") == "v"
        assert await store.settle() is True

    # ----------------------------------------------------------------------------------------
    # compare_and_set
    # ----------------------------------------------------------------------------------------

    async def test_compare_and_set_on_absent_key_needs_expected_none(self, store: Store) -> None:
        assert await store.compare_and_set("counter", "0", "1") is False
        assert await store.get("counter") is None
        assert await store.compare_and_set("counter", None, "1") is True
        assert await store.get("counter") == "1"

    async def test_compare_and_set_writes_only_on_a_match(self, store: Store) -> None:
        await store.put("counter", "5")
        assert await store.compare_and_set("counter", None, "9") is False
        assert await store.compare_and_set("counter", "4", "9") is False
        assert await store.get("counter") == "5"
        assert await store.compare_and_set("counter", "5", "6") is True
        assert await store.get("counter") == "6"

    async def test_compare_and_set_race_has_exactly_one_winner(self, store: Store) -> None:
        await store.put("sign-count", "10")
        results = await asyncio.gather(*(store.compare_and_set("sign-count", "10", f"11-{i}") for i in range(100)))
        assert results.count(True) == 1
        assert await store.get("sign-count") == f"11-{results.index(True)}"

    async def test_compare_and_set_race_on_absent_key_has_exactly_one_winner(self, store: Store) -> None:
        results = await asyncio.gather(*(store.compare_and_set("k", None, str(i)) for i in range(100)))
        assert results.count(True) == 1
        assert await store.get("k") == str(results.index(True))

    async def test_compare_and_set_loops_lose_no_update(self, store: Store) -> None:
        await store.put("n", "0")

        async def bump(times: int) -> None:
            for _ in range(times):
                while True:
                    current = await store.get("n")
                    assert current is not None
                    if await store.compare_and_set("n", current, str(int(current) + 1)):
                        break

        await asyncio.gather(*(bump(5) for _ in range(10)))
        assert await store.get("n") == "50"

    async def test_compare_and_set_with_a_non_positive_ttl_removes_only_a_matching_record(self, store: Store) -> None:
        # The service closes an empty lockout window this way: a delete that loses to any change.
        assert await store.incr("window", ttl=self.long_ttl) == 1
        assert await store.incr("window", ttl=self.long_ttl, amount=-1) == 0
        assert await store.compare_and_set("window", "1", "1", ttl=0) is False
        assert await store.get("window") == "0"
        assert await store.compare_and_set("window", "0", "0", ttl=0) is True
        assert await store.get("window") is None
        assert await store.incr("window", ttl=self.long_ttl) == 1  # a new counter

    async def test_compare_and_set_sets_ttl_and_indexes(self, store: Store) -> None:
        await store.put("k", "a", ttl=self.long_ttl, indexes=["old"])
        assert await store.compare_and_set("k", "a", "b", ttl=self.long_ttl, indexes=["new"]) is True
        assert await store.list_index("old") == {}
        assert await store.list_index("new") == {"k": "b"}

    # ----------------------------------------------------------------------------------------
    # indexes
    # ----------------------------------------------------------------------------------------

    async def test_list_index_of_an_unknown_index_is_empty(self, store: Store) -> None:
        assert await store.list_index("nothing-here") == {}

    async def test_list_index_returns_every_member(self, store: Store) -> None:
        for i in range(50):
            await store.put(f"grant-{i}", f"value-{i}", ttl=self.long_ttl, indexes=["session-1", "user-1"])
        await store.put("grant-other", "x", ttl=self.long_ttl, indexes=["session-2", "user-1"])
        expected = {f"grant-{i}": f"value-{i}" for i in range(50)}
        assert await store.list_index("session-1") == expected
        assert await store.list_index("session-2") == {"grant-other": "x"}
        assert await store.list_index("user-1") == {**expected, "grant-other": "x"}

    async def test_list_index_shows_the_current_value(self, store: Store) -> None:
        await store.put("k", "v1", indexes=["idx"])
        await store.put("k", "v2", indexes=["idx"])
        assert await store.list_index("idx") == {"k": "v2"}

    async def test_indexes_are_replaced_on_overwrite(self, store: Store) -> None:
        await store.put("k", "v1", ttl=self.long_ttl, indexes=["a", "b"])
        await store.put("k", "v2", ttl=self.long_ttl, indexes=["b", "c"])
        assert await store.list_index("a") == {}
        assert await store.list_index("b") == {"k": "v2"}
        assert await store.list_index("c") == {"k": "v2"}
        await store.put("k", "v3", ttl=self.long_ttl)
        for index in ("a", "b", "c"):
            assert await store.list_index(index) == {}
        assert await store.get("k") == "v3"

    async def test_a_repeated_index_name_lists_the_record_once(self, store: Store) -> None:
        await store.put("k", "v", indexes=["idx", "idx"])
        assert await store.list_index("idx") == {"k": "v"}
        assert await store.delete("k") is True
        assert await store.list_index("idx") == {}

    async def test_delete_removes_the_record_from_its_indexes(self, store: Store) -> None:
        await store.put("k1", "v1", ttl=self.long_ttl, indexes=["a", "b"])
        await store.put("k2", "v2", ttl=self.long_ttl, indexes=["a"])
        assert await store.delete("k1") is True
        assert await store.list_index("a") == {"k2": "v2"}
        assert await store.list_index("b") == {}

    async def test_take_removes_the_record_from_its_indexes(self, store: Store) -> None:
        await store.put("k1", "v1", ttl=self.long_ttl, indexes=["a", "b"])
        await store.put("k2", "v2", ttl=self.long_ttl, indexes=["a"])
        assert await store.take("k1") == "v1"
        assert await store.list_index("a") == {"k2": "v2"}
        assert await store.list_index("b") == {}

    async def test_a_key_rewritten_after_delete_is_not_listed_under_its_old_index(self, store: Store) -> None:
        await store.put("k", "v1", indexes=["old"])
        await store.delete("k")
        await store.put("k", "v2", indexes=["new"])
        assert await store.list_index("old") == {}
        assert await store.list_index("new") == {"k": "v2"}

    # ----------------------------------------------------------------------------------------
    # keys and values
    # ----------------------------------------------------------------------------------------

    async def test_keys_built_with_make_key_escape_colons(self, store: Store) -> None:
        left, right = make_key("a:b", "c"), make_key("a", "b:c")
        assert left != right
        await store.put(left, "left", indexes=[make_key("user", "x:y")])
        await store.put(right, "right", indexes=[make_key("user:x", "y")])
        assert await store.get(left) == "left"
        assert await store.get(right) == "right"
        assert await store.list_index(make_key("user", "x:y")) == {left: "left"}
        assert await store.list_index(make_key("user:x", "y")) == {right: "right"}

    async def test_raw_keys_with_colons_and_spaces_work(self, store: Store) -> None:
        key = "grant:abc:def with space/and%percent"
        await store.put(key, "v", indexes=["index:with:colons"])
        assert await store.get(key) == "v"
        assert await store.list_index("index:with:colons") == {key: "v"}
        assert await store.take(key) == "v"

    async def test_unicode_values_and_keys_round_trip(self, store: Store) -> None:
        value = 'päßwörd "quoted" \\ back\nnew line\ttab 🔑 日本語 עברית e\u0301 \u2028'
        key = make_key("ユーザー", "🔑")
        await store.put(key, value, indexes=[make_key("índice", "ü")])
        assert await store.get(key) == value
        assert await store.list_index(make_key("índice", "ü")) == {key: value}
        assert await store.compare_and_set(key, value, value + "!") is True
        assert await store.take(key) == value + "!"

    async def test_large_values_round_trip(self, store: Store) -> None:
        assert len(_LARGE_VALUE.encode()) > 64 * 1024
        await store.put("big", _LARGE_VALUE, ttl=self.long_ttl, indexes=["big-index"])
        assert await store.get("big") == _LARGE_VALUE
        assert await store.list_index("big-index") == {"big": _LARGE_VALUE}
        assert await store.add("big-2", _LARGE_VALUE, ttl=self.long_ttl) is True
        assert await store.take("big-2") == _LARGE_VALUE

    # ----------------------------------------------------------------------------------------
    # expiry (real time: the store runs on SystemClock or native TTLs)
    # ----------------------------------------------------------------------------------------

    async def test_a_record_with_a_long_ttl_is_live(self, store: Store) -> None:
        await store.put("k", "v", ttl=self.long_ttl, indexes=["idx"])
        assert await store.get("k") == "v"
        assert await store.list_index("idx") == {"k": "v"}

    async def test_a_non_positive_ttl_writes_nothing_readable(self, store: Store) -> None:
        await store.put("zero", "v", ttl=0)
        await store.put("negative", "v", ttl=-5, indexes=["idx"])
        assert await store.get("zero") is None
        assert await store.get("negative") is None
        assert await store.list_index("idx") == {}

    async def test_expired_records_are_never_returned(self, store: Store) -> None:
        started = time.monotonic()
        ttl = self.short_ttl
        for name in ("get", "take", "delete", "cas-old", "cas-none", "add", "listed"):
            await store.put(name, f"value-{name}", ttl=ttl, indexes=["listing"])
        await store.put("forever", "stays", indexes=["listing"])
        await store.put("long", "stays too", ttl=self.long_ttl, indexes=["listing"])
        # Written and live before the deadline, so the absences below come from expiry.
        assert await store.get("get") == "value-get"
        assert len(await store.list_index("listing")) == 9

        await self._sleep_until(started, self.expiry_wait)

        assert await store.get("get") is None
        assert await store.take("take") is None
        assert await store.delete("delete") is False
        assert await store.compare_and_set("cas-old", "value-cas-old", "new") is False
        assert await store.get("cas-old") is None
        assert await store.compare_and_set("cas-none", None, "new") is True
        assert await store.get("cas-none") == "new"
        assert await store.add("add", "again", ttl=self.long_ttl) is True
        assert await store.get("add") == "again"
        assert await store.list_index("listing") == {"forever": "stays", "long": "stays too"}

    async def test_expiry_of_add_lets_the_key_be_added_again(self, store: Store) -> None:
        started = time.monotonic()
        assert await store.add("totp-step", "used", ttl=self.short_ttl) is True
        assert await store.add("totp-step", "replayed", ttl=self.short_ttl) is False
        await self._sleep_until(started, self.expiry_wait)
        assert await store.get("totp-step") is None
        assert await store.add("totp-step", "fresh", ttl=self.long_ttl) is True
        assert await store.get("totp-step") == "fresh"

    async def test_incr_window_keeps_the_first_expiry(self, store: Store) -> None:
        started = time.monotonic()
        assert await store.incr("failures", ttl=self.short_ttl) == 1
        await asyncio.sleep(self.short_ttl / 3)
        # A later increment with a longer TTL does not extend the window.
        assert await store.incr("failures", ttl=self.long_ttl) == 2
        await self._sleep_until(started, self.expiry_wait)
        assert await store.get("failures") is None
        # The next increment opens a new window with its own TTL.
        assert await store.incr("failures", ttl=self.long_ttl) == 1
        await self._sleep_until(started, self.expiry_wait + self.short_ttl)
        assert await store.get("failures") == "1"

    async def test_put_without_ttl_clears_an_earlier_expiry(self, store: Store) -> None:
        started = time.monotonic()
        await store.put("k", "temporary", ttl=self.short_ttl, indexes=["idx"])
        await store.put("k", "permanent", indexes=["idx"])
        await self._sleep_until(started, self.expiry_wait)
        assert await store.get("k") == "permanent"
        assert await store.list_index("idx") == {"k": "permanent"}

    async def test_an_expired_record_rewritten_lists_only_under_its_new_index(self, store: Store) -> None:
        started = time.monotonic()
        await store.put("k", "v1", ttl=self.short_ttl, indexes=["old"])
        await self._sleep_until(started, self.expiry_wait)
        await store.put("k", "v2", ttl=self.long_ttl, indexes=["new"])
        assert await store.list_index("old") == {}
        assert await store.list_index("new") == {"k": "v2"}


class SwitchableStore:
    """Wraps a store; while ``down`` every operation raises StoreUnavailable, as a network store
    does when its server is gone. ``close`` always reaches the wrapped store."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.inner, name)
        if name == "close" or not callable(operation):
            return operation

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the store server does not answer")
            return await operation(*args, **kwargs)

        return call


@pytest.mark.asyncio
class StoreScanSuite:
    """The optional ``scan(prefix)`` capability (:class:`~stepup_core.store.migrations.ScanningStore`),
    which ``stepup keys rotate`` uses to find every stored credential. A backend that offers it
    subclasses this beside :class:`StoreConformanceSuite`, with the same ``store`` fixture."""

    async def _scan(self, store: Any, prefix: str, batch: int = 500) -> dict[str, str]:
        found: dict[str, str] = {}
        async for key, value in store.scan(prefix, batch=batch):
            assert key not in found, f"scan returned {key!r} twice"
            found[key] = value
        return found

    async def test_scan_returns_every_live_record_under_the_prefix_and_nothing_else(self, store: Store) -> None:
        expected = {make_key("cred", f"user-{i}", "c"): f"value-{i}" for i in range(40)}
        for key, value in expected.items():
            await store.put(key, value, ttl=300, indexes=["idx"])
        await store.put("cre", "shorter")
        await store.put("credential-lookalike", "no colon")
        await store.put("other:cred:1", "elsewhere")
        await store.put(make_key("cred", "expired", "c"), "gone", ttl=-1)
        assert await self._scan(store, "cred:", batch=7) == expected

    async def test_scan_treats_pattern_characters_in_the_prefix_literally(self, store: Store) -> None:
        await store.put("a*b:1", "star")
        await store.put("axb:1", "x")
        await store.put("a[b]:1", "bracket")
        await store.put("a%_:1", "percent")
        await store.put("aZZ:1", "z")
        assert await self._scan(store, "a*b:") == {"a*b:1": "star"}
        assert await self._scan(store, "a[b]:") == {"a[b]:1": "bracket"}
        assert await self._scan(store, "a%_:") == {"a%_:1": "percent"}

    async def test_scan_of_an_empty_prefix_range_is_empty_and_unicode_keys_work(self, store: Store) -> None:
        assert await self._scan(store, "nothing:") == {}
        key = make_key("ユーザー", "🔑")
        await store.put(key, "v")
        await store.put(make_key("ユーザー", "x") + "\U0010fffe", "edge")
        assert await self._scan(store, make_key("ユーザー") + ":") == {
            key: "v",
            make_key("ユーザー", "x") + "\U0010fffe": "edge",
        }
