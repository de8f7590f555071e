"""Finding the client half of a method among the installed plugins."""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from ..errors import ClientMethodMissing
from .method import ClientMethod

#: The distribution that provides each first-party method.
METHOD_PACKAGES: Mapping[str, str] = {
    "otp": "stepup-otp",
    "totp": "stepup-totp",
    "passkey": "stepup-passkey",
    "wallet": "stepup-wallet",
    "social": "stepup-social",
    "recovery": "stepup-recovery",
}


def package_for(method: str, hint: str | None = None) -> str:
    """The distribution to install for ``method`` (a server-supplied ``hint`` wins)."""
    return hint or METHOD_PACKAGES.get(method) or f"stepup-{method}"


def client_methods(pm: pluggy.PluginManager) -> dict[str, ClientMethod]:
    """Every registered client method by name; a name registered twice is an error naming both
    plugins."""
    from ..plugins import collect_registrations

    def entry(method: ClientMethod) -> tuple[str, ClientMethod]:
        return method.name, method

    return collect_registrations(pm, "stepup_register_client_methods", "client method", entry).items


def missing(method: str, hint: str | None = None) -> ClientMethodMissing:
    package = package_for(method, hint)
    return ClientMethodMissing(
        f"the {method!r} method needs its client half, which is not installed: pip install {package}",
        method=method,
        package=package,
    )
