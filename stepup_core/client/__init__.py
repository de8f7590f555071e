"""The client side of stepup: :class:`StepUpClient` (the hook's surface over HTTP), the token
jar, prompters, and the :class:`~stepup_core.client.method.ClientMethod` protocol plugins
implement.

Names are imported on first use, so a plugin that imports ``stepup_core.client.method`` to
register its client half does not pay for aiohttp's client at registration time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import ELEVATED_TOKEN_HEADER, StepUpApi, lenient
    from .app import AppRequest, AppResponse, AppRoutes, parse_www_authenticate
    from .client import OtpSent, StepUpClient, StepUpState
    from .exchange import MethodExchange
    from .jar import TokenJar
    from .method import Answer, ClientContext, ClientMethod, Prompter
    from .problems import error_from_problem
    from .prompters import ScriptedPrompter, ScriptExhausted, TerminalPrompter
    from .registry import client_methods, package_for

_HOMES = {
    "ELEVATED_TOKEN_HEADER": "api",
    "StepUpApi": "api",
    "lenient": "api",
    "AppRequest": "app",
    "AppResponse": "app",
    "AppRoutes": "app",
    "parse_www_authenticate": "app",
    "MethodExchange": "exchange",
    "OtpSent": "client",
    "StepUpClient": "client",
    "StepUpState": "client",
    "TokenJar": "jar",
    "Answer": "method",
    "ClientContext": "method",
    "ClientMethod": "method",
    "Prompter": "method",
    "error_from_problem": "problems",
    "ScriptExhausted": "prompters",
    "ScriptedPrompter": "prompters",
    "TerminalPrompter": "prompters",
    "client_methods": "registry",
    "package_for": "registry",
}

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "Answer",
    "AppRequest",
    "AppResponse",
    "AppRoutes",
    "ClientContext",
    "ClientMethod",
    "MethodExchange",
    "OtpSent",
    "Prompter",
    "ScriptExhausted",
    "ScriptedPrompter",
    "StepUpApi",
    "StepUpClient",
    "StepUpState",
    "TerminalPrompter",
    "TokenJar",
    "client_methods",
    "error_from_problem",
    "lenient",
    "package_for",
    "parse_www_authenticate",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The exported names too, before their first use imports them (``dir()``, completion)."""
    return sorted(set(globals()) | set(__all__))
