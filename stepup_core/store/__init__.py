"""Stores: the protocol, the memory and SQLite backends, and opening one by URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from ..clock import Clock, SystemClock
from ..errors import ConfigError, PluginError
from .base import Counter, Reservation, Store, StoreFactory, Write, make_key

__all__ = ["Counter", "Reservation", "Store", "StoreFactory", "Write", "make_key", "open_store", "store_factories"]


def store_factories(pm: pluggy.PluginManager) -> dict[str, StoreFactory]:
    """Every registered backend by scheme; a scheme registered twice is an error."""
    factories: dict[str, StoreFactory] = {}
    owners: dict[str, str] = {}

    def register_for(plugin_name: str) -> Callable[[str, StoreFactory], None]:
        def register(scheme: str, factory: StoreFactory) -> None:
            if scheme in factories:
                raise PluginError(
                    f"store scheme {scheme!r} is registered by both {owners[scheme]!r} and {plugin_name!r}"
                )
            factories[scheme] = factory
            owners[scheme] = plugin_name

        return register

    for impl in pm.hook.stepup_register_stores.get_hookimpls():
        impl.function(register=register_for(impl.plugin_name))
    return factories


async def open_store(url: str, pm: pluggy.PluginManager, clock: Clock | None = None, **_: Any) -> Store:
    """Open the store a URL names (``memory:``, ``sqlite:PATH``, ``redis://...``)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    factories = store_factories(pm)
    if scheme not in factories:
        known = ", ".join(sorted(factories)) or "none"
        hint = " (pip install stepup-redis)" if scheme.startswith("redis") else ""
        raise ConfigError(f"no store backend for {url.split(':', 1)[0]!r}{hint}; installed schemes: {known}")
    return await factories[scheme](url, clock or SystemClock())
