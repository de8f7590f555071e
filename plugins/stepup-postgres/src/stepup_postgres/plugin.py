"""stepup hooks for the PostgreSQL store. Cheap to import: asyncpg loads when a store is opened."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepup_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from stepup_core.clock import Clock
    from stepup_core.store.base import Store, StoreFactory


async def open_store(url: str, clock: Clock) -> Store:
    """The factory for ``postgresql://`` and ``postgres://`` URLs."""
    from .store import open_postgres_store

    return await open_postgres_store(url, clock)


@hookimpl
def stepup_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    register("postgresql", open_store)
    register("postgres", open_store)
