"""Read coalescing for network stores: concurrent ``get`` calls share one round trip.

A protected route reads one record (its grant) per request. On a store across the network
most of that read's cost is the round trip itself, paid once per concurrent request. A
:class:`ReadCoalescer` queues the keys asked for and answers all of them with one call of the
store's ``fetch_many(keys)`` (one Redis exchange, one SQL statement): the DataLoader pattern,
also known as auto-pipelining.

One fetch is on its way at a time, except that a full batch goes out at once: the keys asked for
in one loop turn go in the next fetch, and so do the keys asked for while a fetch is on its way,
sent one loop turn after it is answered (so the requests that became ready meanwhile join them).
So under load a batch holds what arrived during one round trip, however short the loop's turns,
and the cost per lookup falls as the load rises; an idle store sends a lone lookup in the next
loop turn.

Guarantees:

- **Freshness.** Nothing is cached, across flushes or otherwise: every ``get`` is answered by
  a fetch sent after the ``get`` was called. A ``get`` issued after a write (``put``,
  ``delete``, ``take``, ...) completed therefore sees that write; it never joins a fetch that
  was already on its way.
- **Latency.** With no fetch on its way, the first ``get`` schedules the flush for the next
  loop turn (the flush is a task, and the loop runs a new task's first step with ``call_soon``),
  so a lone request waits at most one loop turn longer than it would without coalescing. A
  ``get`` that arrives while a fetch is on its way waits for that fetch's answer, then goes out
  in the next loop turn: at most one round trip and one loop turn more, in exchange for sharing
  it.
- **Bounded batches.** One fetch carries at most :attr:`ReadCoalescer.max_batch` keys; the
  key that fills a batch sends it (in the next loop turn, beside any fetch on its way). A key
  asked for several times in one batch is fetched once.
- **Failures reach every waiter.** An exception from a fetch is raised to every waiter of that
  batch, so the store's own translation (``StoreUnavailable``) keeps guards failing closed. A
  value in the fetch's answer that is an exception is raised to that key's waiters alone.
- **Cancellation stays local.** A cancelled waiter neither cancels nor breaks the batch; the
  others are answered.
- **Closing.** :meth:`ReadCoalescer.close` fails every waiter still queued or in flight with the
  error the store names (``StoreUnavailable``), and every later ``get`` too.

There is no global state: a store makes one coalescer, in the event loop it runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["DEFAULT_MAX_BATCH", "FetchMany", "ReadCoalescer"]

T = TypeVar("T")

#: Keys one fetch carries at most.
DEFAULT_MAX_BATCH = 256

#: ``fetch_many(keys)``: the live value of each key found (a missing key is absent, or None);
#: a value that is an exception is raised to that key's waiters alone.
FetchMany = Callable[[Sequence[str]], Awaitable[Mapping[str, "T | BaseException | None"]]]

_Waiters = dict[str, list["asyncio.Future[T | None]"]]


class ReadCoalescer(Generic[T]):
    """Answers concurrent ``get`` calls with as few ``fetch_many`` calls as it can, one at a time.

    :param fetch_many: reads several keys in one round trip and raises the store's own errors.
    :param closed: makes the error raised once the coalescer is closed.
    :param max_batch: keys one fetch carries at most.
    """

    def __init__(
        self,
        fetch_many: Callable[[Sequence[str]], Awaitable[Mapping[str, T | BaseException | None]]],
        *,
        closed: Callable[[], BaseException],
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.loop = asyncio.get_running_loop()
        self.max_batch = max_batch
        self._fetch_many = fetch_many
        self._closed_error = closed
        self._closed = False
        #: Keys asked for and not sent yet, each with its waiters.
        self._queued: _Waiters[T] = {}
        #: The task that sends the queue, one fetch after another, while there is one.
        self._sender: asyncio.Task[None] | None = None
        #: Fetches on their way, each with the waiters it answers.
        self._in_flight: dict[asyncio.Task[None], _Waiters[T]] = {}

    @classmethod
    def serving(
        cls,
        current: ReadCoalescer[T] | None,
        fetch_many: Callable[[Sequence[str]], Awaitable[Mapping[str, T | BaseException | None]]],
        *,
        closed: Callable[[], BaseException],
    ) -> ReadCoalescer[T]:
        """``current`` when it serves the running event loop, else a new coalescer for it: a store
        makes its coalescer on its first ``get``, in the loop it runs in."""
        if current is not None and current.loop is asyncio.get_running_loop():
            return current
        return cls(fetch_many, closed=closed)

    def get(self, key: str) -> asyncio.Future[T | None]:
        """Queue ``key``; await the answer: the value ``fetch_many`` finds for it (None when
        absent), from a fetch sent after this call. (A future rather than a coroutine: one frame
        less on the path of every lookup.)"""
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[T | None] = self.loop.create_future()
        queued = self._queued
        waiters = queued.get(key)
        if waiters is not None:
            waiters.append(future)
            return future
        queued[key] = [future]
        if len(queued) >= self.max_batch:  # a full batch goes out beside any fetch on its way
            self._queued = {}
            self._start(self._fetch(queued), queued)
        elif self._sender is None:
            # The task is made directly (never started eagerly): its first step runs in the
            # next loop turn, when every get of this turn is queued.
            self._sender = self._start(self._send(), {})
        return future

    def _start(self, work: Coroutine[Any, Any, None], waiters: _Waiters[T]) -> asyncio.Task[None]:
        task = asyncio.Task(work, loop=self.loop)
        self._in_flight[task] = waiters
        task.add_done_callback(self._in_flight.pop)
        return task

    async def _send(self) -> None:
        """Send the queue, then what queued up meanwhile, until nothing is left."""
        me = asyncio.current_task()
        try:
            while self._queued and not self._closed:
                batch, self._queued = self._queued, {}
                if me is not None:
                    self._in_flight[me] = batch
                await self._fetch(batch)
                if self._queued:
                    # Lookups queued while that fetch was on its way: the store is busy. One loop
                    # turn more lets the requests that became ready meanwhile join them.
                    await asyncio.sleep(0)
        except asyncio.CancelledError:  # the loop is shutting down: nothing will send the rest
            for waiters in self._queued.values():
                for waiter in waiters:
                    waiter.cancel()
            raise
        finally:
            self._sender = None

    async def _fetch(self, batch: _Waiters[T]) -> None:
        # A key whose every waiter was cancelled is not fetched.
        keys = [key for key, waiters in batch.items() if not all(w.done() for w in waiters)]
        if not keys or self._closed:
            return
        try:
            found = await self._fetch_many(keys)
        except asyncio.CancelledError:
            for waiters in batch.values():
                for waiter in waiters:
                    waiter.cancel()
            raise
        except BaseException as exc:  # handed to the waiters, who raise it
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, waiters in batch.items():
            value = found.get(key)
            for waiter in waiters:
                if waiter.done():  # cancelled, or failed by close()
                    continue
                if isinstance(value, BaseException):
                    waiter.set_exception(value)
                else:
                    waiter.set_result(value)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Fail every waiter, queued or in flight, with the ``closed`` error and stop the fetches
        on their way. Idempotent; later ``get`` calls raise the ``closed`` error."""
        if self._closed:
            return
        self._closed = True
        queued, self._queued = self._queued, {}
        in_flight = dict(self._in_flight)
        for batch in (queued, *in_flight.values()):
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(self._closed_error())
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
