"""A portal into an event loop of stepup's own, for frameworks whose views are synchronous.

stepup is async (its stores hold connections bound to one event loop). A WSGI application
(Flask, Django under WSGI) runs each request in a thread of its own; Django may run async views
on a loop per request. :class:`Portal` keeps one event loop in a background thread where the
service lives; every guard, whatever thread or loop it runs on, hands its coroutine over and
waits for the answer::

    portal = Portal.start()
    service = portal.call(StepUpService.create, config)
    grant = portal.call(service.require_scope, principal, "wallet:export", token)   # sync code
    grant = await portal.run(service.require_scope(principal, "wallet:export", token))  # any loop

:class:`HostedService` bundles the two: a service opened in a portal, closed with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import attrs

if TYPE_CHECKING:
    from .service import StepUpService

T = TypeVar("T")
P = ParamSpec("P")


@attrs.define
class Portal:
    """An event loop running in a daemon thread."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @classmethod
    def start(cls, name: str = "stepup-portal") -> Portal:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        ready.wait()
        return cls(loop, thread)

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if not self.running:
            coro.close()
            raise RuntimeError("the stepup portal is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the portal and wait for it (from sync code only)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("Portal.call from the portal's own thread would wait forever; await instead")

        async def invoke() -> T:
            return await fn(*args, **kwargs)

        return self._submit(invoke()).result()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` in the portal from any event loop (directly, when already on it)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(self._submit(coro))

    def close(self) -> None:
        """Stop the loop and its thread (pending work is cancelled)."""
        if not self.running:
            return

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@attrs.define
class HostedService:
    """A :class:`~stepup_core.service.StepUpService` living in a :class:`Portal`."""

    portal: Portal
    service: StepUpService

    @classmethod
    def open(cls, factory: Callable[[], Awaitable[StepUpService]] | None = None, **create: Any) -> HostedService:
        """Start a portal and build the service in it: ``factory()`` when given, else
        ``StepUpService.create(**create)`` (``config``, ``pm``, ``clock``, ``store``)."""
        from .service import StepUpService

        portal = Portal.start()
        try:
            service = portal.call(factory) if factory is not None else portal.call(StepUpService.create, **create)
        except BaseException:
            portal.close()
            raise
        return cls(portal, service)

    def close(self) -> None:
        if self.portal.running:
            self.portal.call(self.service.close)
        self.portal.close()
