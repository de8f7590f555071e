"""Checks that need the installed plugins, run once when a service starts.

:func:`~stepup_core.config.load_config` catches what the file alone shows (a wrong key, a bad
value, an unset ``${NAME}``). What only the installed plugins can show is checked here, when
:meth:`StepUpService.create <stepup_core.service.StepUpService.create>` has registered the
methods, so a mistake stops the start instead of surfacing at the first request:

- a ``[plugins.<name>]`` table that no installed plugin reads (a typo, or a plugin that is not
  installed);
- a scope policy whose ``allowed_methods`` names a method that is not installed (the scope
  could never be stepped up for with it).

A table for a plugin switched off with ``STEPUP_DISABLE_PLUGINS`` (or left out of
``STEPUP_LOAD_PLUGINS``) is accepted: turning a plugin off must not need an edit of the file.
A table for a plugin that failed to load is an error carrying the load error.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Mapping
from typing import Protocol

import pluggy

from .config import StepUpConfig
from .errors import ConfigError
from .scopes import ScopePolicies
from .verifier import Verifier

log = logging.getLogger("stepup")

#: Registered names of the built-in plugins start with this; they read no table.
BUILTIN_PREFIX = "stepup_core."


def _listing(names: Iterable[str]) -> str:
    shown = sorted(set(names))
    return ", ".join(shown) if shown else "none"


def installed_plugin_names(pm: pluggy.PluginManager) -> set[str]:
    """The names a ``[plugins.<name>]`` table may use: each registered plugin's name; the
    entry-point names of the package each registered plugin (a module, or an object of one of
    its classes) comes from, so a plugin registered under another name, as tests do, still owns
    its table; and the tables the built-ins read (``notifications``)."""
    from .notifications import PLUGIN_NAME as NOTIFICATIONS
    from .plugins import _stepup_entry_points

    builtin_tables = {f"{BUILTIN_PREFIX}default_plugins.notifications": NOTIFICATIONS}
    names: set[str] = set()
    packages: set[str] = set()
    for name, plugin in pm.list_name_plugin():
        if plugin is None or not name:
            continue
        if str(name).startswith(BUILTIN_PREFIX):
            if str(name) in builtin_tables:
                names.add(builtin_tables[str(name)])
            continue
        names.add(str(name))
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
        packages.add(module.split(".")[0])
    names |= {ep.name for ep in _stepup_entry_points() if ep.value.split(".")[0].split(":")[0].strip() in packages}
    return names


def check_plugin_sections(config: StepUpConfig, pm: pluggy.PluginManager, methods: Iterable[str]) -> None:
    """Every ``[plugins.<name>]`` table belongs to an installed plugin (its entry-point name) or
    names an installed method; else :class:`ConfigError` naming the installed plugins."""
    installed = installed_plugin_names(pm)
    known = installed | set(methods)
    failures = {f.name: f.error for f in getattr(pm, "load_failures", [])}
    for name in config.plugins:
        if name in known or pm.is_blocked(name):
            continue
        if name in failures:
            raise ConfigError(f"[plugins.{name}] configures plugin {name!r}, which failed to load: {failures[name]}")
        raise ConfigError(
            f"[plugins.{name}] configures a plugin that is not installed; installed plugins: "
            f"{_listing(installed)} (check the name, or install the plugin)"
        )


def check_scope_methods(config: StepUpConfig, policies: ScopePolicies, verifiers: Mapping[str, Verifier]) -> None:
    """Every method a scope policy allows is installed; else :class:`ConfigError` naming the
    installed methods. A required scope no installed method may grant is logged."""
    for key, cfg in config.scopes.items():
        missing = [m for m in cfg.allowed_methods or () if m not in verifiers]
        if missing:
            raise ConfigError(
                f"scopes.{key}.allowed_methods names {_listing(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed; installed methods: {_listing(verifiers)}"
            )
    if not verifiers:
        return
    for key, policy in policies.policies.items():
        if policy.required and not any(policy.permits(name, v.factor) for name, v in verifiers.items()):
            log.warning(
                "stepup: no installed method may step up for scope %s (allowed_methods %s, min_factor %s); "
                "installed methods: %s",
                key,
                list(policy.allowed_methods) if policy.allowed_methods is not None else "any",
                policy.min_factor.value if policy.min_factor is not None else "any",
                _listing(verifiers),
            )


def check_startup(
    config: StepUpConfig, pm: pluggy.PluginManager, policies: ScopePolicies, verifiers: Mapping[str, Verifier]
) -> None:
    """Both checks above; :class:`ConfigError` on the first mistake."""
    check_plugin_sections(config, pm, verifiers)
    check_scope_methods(config, policies, verifiers)


class _Closable(Protocol):
    async def close(self) -> None: ...


async def close_quietly(resource: _Closable) -> None:
    """Close what a failed start opened. An error while closing is logged, so the error that
    stopped the start is the one reported."""
    try:
        await resource.close()
    except Exception:  # the start's own error matters more
        log.exception("stepup: closing %r after a failed start failed", resource)
