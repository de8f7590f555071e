"""Read coalescing for network stores: concurrent ``get`` calls share one round trip.

A protected route reads one record (its grant) per request. On a store across the network
most of that read's cost is the round trip itself, paid once per concurrent request. A
:class:`ReadCoalescer` queues the keys asked for while the event loop runs one turn and answers
all of them with one call of the store's ``fetch_many(keys)`` (one Redis exchange, one SQL
statement): the DataLoader pattern, also known as auto-pipelining.

Guarantees:

- **Freshness.** Nothing is cached, across flushes or otherwise: every ``get`` is answered by
  a fetch sent after the ``get`` was called. A ``get`` issued after a write (``put``,
  ``delete``, ``take``, ...) completed therefore sees that write; it never joins a fetch that
  was already on its way.
- **Latency.** The first ``get`` of a loop turn schedules the flush for the next turn (the
  flush is a task, and the loop runs a new task's first step with ``call_soon``), so a lone
  request waits at most one loop turn longer than it would without coalescing.
- **Bounded batches.** One fetch carries at most :attr:`ReadCoalescer.max_batch` keys; more
  make several fetches, sent together. A key asked for several times is fetched once.
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
    """Answers concurrent ``get`` calls of one event-loop turn with one ``fetch_many`` call.

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
        #: Keys asked for since the last flush started, each with its waiters (None: none yet).
        self._queued: _Waiters[T] | None = None
        #: Flushes and fetches on their way, each with the waiters it answers.
        self._in_flight: dict[asyncio.Task[None], _Waiters[T]] = {}

    async def get(self, key: str) -> T | None:
        """The value ``fetch_many`` finds for ``key`` (None when absent), from a fetch sent after
        this call."""
        if self._closed:
            raise self._closed_error()
        future: asyncio.Future[T | None] = self.loop.create_future()
        queued = self._queued
        if queued is None:
            # The first get of this loop turn schedules the flush: a task, whose first step the
            # loop runs in its next turn (the task is made directly, never started eagerly, so
            # every get of this turn is queued by then).
            queued = self._queued = {}
            self._start(self._flush(queued), queued)
        waiters = queued.get(key)
        if waiters is None:
            queued[key] = [future]
        else:
            waiters.append(future)
        return await future

    def _start(self, work: Coroutine[Any, Any, None], waiters: _Waiters[T]) -> None:
        task = asyncio.Task(work, loop=self.loop)
        self._in_flight[task] = waiters
        task.add_done_callback(self._in_flight.pop)

    async def _flush(self, queued: _Waiters[T]) -> None:
        """Send everything queued, :attr:`max_batch` keys per fetch."""
        if self._queued is queued:
            self._queued = None  # later gets queue for the next flush
        if self._closed:
            return
        # A key whose every waiter was cancelled is not fetched.
        keys = [key for key, waiters in queued.items() if not all(w.done() for w in waiters)]
        size = self.max_batch
        batches = [{key: queued[key] for key in keys[i : i + size]} for i in range(0, len(keys), size)]
        for batch in batches[1:]:
            self._start(self._fetch(batch), batch)
        if batches:
            await self._fetch(batches[0])

    async def _fetch(self, batch: _Waiters[T]) -> None:
        try:
            found = await self._fetch_many(list(batch))
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
        queued, self._queued = self._queued, None
        in_flight = dict(self._in_flight)
        for batch in (queued or {}, *in_flight.values()):
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(self._closed_error())
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
