"""Stores: the protocol, the memory and SQLite backends, and opening one by URL."""

from __future__ import annotations

from typing import Any

import pluggy

from ..clock import Clock, SystemClock
from ..errors import ConfigError
from ..install import install_hint
from ..plugins import collect_registrations
from .base import Counter, Reservation, Store, StoreFactory, Write, make_key

__all__ = ["Counter", "Reservation", "Store", "StoreFactory", "Write", "make_key", "open_store", "store_factories"]


def store_factories(pm: pluggy.PluginManager) -> dict[str, StoreFactory]:
    """Every registered backend by scheme; a scheme registered twice is an error."""

    def entry(scheme: str, factory: StoreFactory) -> tuple[str, StoreFactory]:
        return scheme, factory

    return collect_registrations(pm, "stepup_register_stores", "store scheme", entry).items


async def open_store(url: str, pm: pluggy.PluginManager, clock: Clock | None = None, **_: Any) -> Store:
    """Open the store a URL names (``memory:``, ``sqlite:PATH``, ``redis://...``)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    factories = store_factories(pm)
    if scheme not in factories:
        known = ", ".join(sorted(factories)) or "none"
        hint = f"; to add it: {install_hint('stepup-redis')}" if scheme.startswith("redis") else ""
        raise ConfigError(f"no store backend for {url.split(':', 1)[0]!r}; installed schemes: {known}{hint}")
    return await factories[scheme](url, clock or SystemClock())
