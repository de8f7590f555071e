"""The plugin manager factory.

``get_plugin_manager()`` adds the hook specs, honours ``STEPUP_DISABLE_PLUGINS`` (a deny-list)
and ``STEPUP_LOAD_PLUGINS`` (an allow-list; set but empty means none), loads each entry point of
the ``stepup`` group on its own (a broken plugin is reported with its name and error while the
rest load), registers the built-ins from ``default_plugins``, and ends with ``check_pending()``
so a misspelt hook fails loudly.
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError

log = logging.getLogger("stepup")

ENTRY_POINT_GROUP = "stepup"
DEFAULT_PLUGINS = (
    "stepup_core.default_plugins.policy",
    "stepup_core.default_plugins.console_delivery",
    "stepup_core.default_plugins.stores",
    "stepup_core.default_plugins.audit_log",
    "stepup_core.default_plugins.notifications",
)


@attrs.frozen
class PluginLoadFailure:
    name: str
    error: str


class StepUpPluginManager(pluggy.PluginManager):
    """A PluginManager that remembers which entry points failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.load_failures: list[PluginLoadFailure] = []
        #: (distribution name, version) of each plugin loaded from an entry point, by plugin name.
        self.distributions: dict[str, tuple[str, str]] = {}


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _stepup_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def load_entry_points(pm: StepUpPluginManager) -> None:
    allowed = _names_from_env("STEPUP_LOAD_PLUGINS")
    denied = _names_from_env("STEPUP_DISABLE_PLUGINS") or set()
    for ep in _stepup_entry_points():
        if ep.name in denied or (allowed is not None and ep.name not in allowed):
            pm.set_blocked(ep.name)
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            if ep.dist is not None:
                pm.distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the rest
            failure = PluginLoadFailure(name=ep.name, error=f"{type(exc).__name__}: {exc}")
            pm.load_failures.append(failure)
            log.error("stepup plugin %r failed to load and is skipped: %s", ep.name, failure.error)


def get_plugin_manager(load_entrypoints: bool = True) -> StepUpPluginManager:
    pm = StepUpPluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entry_points(pm)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        if pm.get_plugin(module_name) is None:
            pm.register(module, name=module_name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return pm


def plugin_distribution(pm: pluggy.PluginManager, plugin: Any) -> tuple[str | None, str | None]:
    """(distribution name, version) of a registered plugin, when it came from an entry point."""
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return dist.project_name, dist.version
    distributions: dict[str, tuple[str, str]] = getattr(pm, "distributions", {})
    known = distributions.get(pm.get_name(plugin) or "")
    if known is not None:
        return known
    return None, None


def describe_plugins(pm: pluggy.PluginManager, include_builtin: bool = False) -> list[dict[str, Any]]:
    """Name, version and hooks of each plugin: what ``stepup plugins`` prints."""
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        if plugin is None:
            continue
        builtin = str(name).startswith("stepup_core.")
        if builtin and not include_builtin:
            continue
        dist, version = plugin_distribution(pm, plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "package": dist, "version": version, "hooks": hooks})
    return rows
