"""Finding the client half of a method among the installed plugins."""

from __future__ import annotations

import pluggy

from ..errors import ClientMethodMissing, PluginError
from ..install import METHOD_PACKAGES, install_hint, package_for
from .method import ClientMethod

__all__ = ["METHOD_PACKAGES", "client_methods", "missing", "package_for"]


def client_methods(pm: pluggy.PluginManager) -> dict[str, ClientMethod]:
    """Every registered client method by name; a name registered twice is an error naming both
    plugins."""
    methods: dict[str, ClientMethod] = {}
    owners: dict[str, str] = {}
    for impl in pm.hook.stepup_register_client_methods.get_hookimpls():

        def register(method: ClientMethod, _plugin: str = impl.plugin_name) -> None:
            if method.name in methods:
                raise PluginError(
                    f"client method {method.name!r} is registered by both {owners[method.name]!r} and {_plugin!r}"
                )
            methods[method.name] = method
            owners[method.name] = _plugin

        impl.function(register=register)
    return methods


def missing(method: str, hint: str | None = None) -> ClientMethodMissing:
    package = package_for(method, hint)
    return ClientMethodMissing(
        f"the {method!r} method needs its client half, which is not installed: {install_hint(package)}",
        method=method,
        package=package,
    )
