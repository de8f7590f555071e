"""Finding the client half of a method among the installed plugins."""

from __future__ import annotations

import pluggy

from ..errors import ClientMethodMissing
from ..install import install_hint
from ..plugins import collect_registrations
from .method import ClientMethod


def package_for(method: str, hint: str | None = None) -> str:
    """The distribution to install for ``method``: the one the server names for it
    (``MethodInfo.package``), else ``stepup-<method>`` by the naming convention."""
    return hint or f"stepup-{method}"


def client_methods(pm: pluggy.PluginManager) -> dict[str, ClientMethod]:
    """Every registered client method by name; a name registered twice is an error naming both
    plugins."""

    def entry(method: ClientMethod) -> tuple[str, ClientMethod]:
        return method.name, method

    return collect_registrations(pm, "stepup_register_client_methods", "client method", entry).items


def missing(method: str, hint: str | None = None) -> ClientMethodMissing:
    package = package_for(method, hint)
    return ClientMethodMissing(
        f"the {method!r} method needs its client half, which is not installed: {install_hint(package)}",
        method=method,
        package=package,
    )
