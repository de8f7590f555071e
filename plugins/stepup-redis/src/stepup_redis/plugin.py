"""stepup hooks for the Redis store. Cheap to import: redis loads when a store is opened."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepup_core import hookimpl

if TYPE_CHECKING:
    from stepup_core.clock import Clock
    from stepup_core.store.base import Store, StoreFactory


async def open_store(url: str, clock: Clock) -> Store:
    """The factory for ``redis://`` and ``rediss://`` URLs."""
    from .store import open_redis_store

    return await open_redis_store(url, clock)


@hookimpl
def stepup_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    register("redis", open_store)
    register("rediss", open_store)
