"""The built-in store backends: ``memory:`` and ``sqlite:PATH``."""

from __future__ import annotations

from collections.abc import Callable

from ..clock import Clock
from ..hookspecs import hookimpl
from ..store.base import Store, StoreFactory


async def _open_memory(url: str, clock: Clock) -> Store:
    from ..store.memory import open_memory_store

    return await open_memory_store(url, clock)


async def _open_sqlite(url: str, clock: Clock) -> Store:
    from ..store.sqlite import open_sqlite_store

    return await open_sqlite_store(url, clock)


@hookimpl
def stepup_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    register("memory", _open_memory)
    register("sqlite", _open_sqlite)
