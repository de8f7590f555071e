"""The client side of stepup: :class:`StepUpClient` (the hook's surface over HTTP), the token
jar, prompters, and the :class:`~stepup_core.client.method.ClientMethod` protocol plugins
implement."""

from __future__ import annotations

from .client import ELEVATED_TOKEN_HEADER, AppResponse, OtpSent, StepUpClient, StepUpState, parse_www_authenticate
from .jar import TokenJar
from .method import Answer, ClientContext, ClientMethod, Prompter
from .problems import error_from_problem
from .prompters import ScriptedPrompter, ScriptExhausted, TerminalPrompter
from .registry import METHOD_PACKAGES, client_methods, package_for

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "METHOD_PACKAGES",
    "Answer",
    "AppResponse",
    "ClientContext",
    "ClientMethod",
    "OtpSent",
    "Prompter",
    "ScriptExhausted",
    "ScriptedPrompter",
    "StepUpClient",
    "StepUpState",
    "TerminalPrompter",
    "TokenJar",
    "client_methods",
    "error_from_problem",
    "package_for",
    "parse_www_authenticate",
]
