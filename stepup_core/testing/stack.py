"""A whole stepup stack for tests: a service, the HTTP server on loopback, and clients.

::

    async with StepUpStack.start(plugins=[stepup_totp.plugin]) as stack:
        client = stack.client("alice")
        await client.check_step_up_auth("user:update")

Every answer a client of the stack receives from stepup's routes is checked against stepup's
own OpenAPI document (:class:`~stepup_core.server.testing.ResponseValidator`): a test fails on
an undocumented answer. Principals are identified by static bearer tokens, one per user name.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from ..client import ScriptedPrompter, StepUpClient
from ..clock import ManualClock
from ..config import config_from_mapping
from ..identify import StaticTokenIdentify
from ..models import Principal
from ..plugins import StepUpPluginManager, get_plugin_manager
from ..server import build_app, build_document, serve_app
from ..server.testing import ResponseValidator
from ..service import StepUpService

DEFAULT_USERS = ("alice", "bob")


def session_token(user: str) -> str:
    """The static bearer token the stack gives ``user`` (at least 16 characters)."""
    return f"{user}-test-session-token".ljust(24, "0")


@attrs.define
class StepUpStack:
    service: StepUpService
    pm: StepUpPluginManager
    clock: ManualClock
    base_url: str
    http: aiohttp.ClientSession
    validator: ResponseValidator
    principals: dict[str, Principal]

    def principal(self, user: str) -> Principal:
        return self.principals[user]

    def client(self, user: str = "alice", **kwargs: Any) -> StepUpClient:
        """A client signed in as ``user``; it shares the stack's clock and plugin manager and
        answers prompts from a :class:`ScriptedPrompter` unless one is given."""
        kwargs.setdefault("prompter", ScriptedPrompter())
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("pm", self.pm)
        return StepUpClient(self.base_url, session_token(user), http=self.http, **kwargs)

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        plugins: Iterable[object] = (),
        config: Mapping[str, Any] | None = None,
        users: Iterable[str] = DEFAULT_USERS,
        clock: ManualClock | None = None,
        setup_app: Callable[[web.Application], None] | None = None,
    ) -> AsyncIterator[StepUpStack]:
        """Start a service on the memory store (``config`` overrides the defaults), mount it on an
        application (``setup_app`` adds the application's own routes) and serve it on loopback."""
        clock = clock or ManualClock()
        pm = get_plugin_manager(load_entrypoints=False)
        for index, plugin in enumerate(plugins):
            if not pm.is_registered(plugin):
                pm.register(plugin, name=f"stack-plugin-{index}")
        settings: dict[str, Any] = {"store": "memory:", "secret_key": secrets.token_hex(32)}
        settings.update(config or {})
        service = await StepUpService.create(config_from_mapping(settings), pm=pm, clock=clock)
        principals = {user: Principal(user, f"{user}-session") for user in users}
        identify = StaticTokenIdentify.from_mapping({session_token(u): p for u, p in principals.items()})
        app = build_app(service, identify)
        if setup_app is not None:
            setup_app(app)
        prefix = service.config.server.prefix
        validator = ResponseValidator(build_document(prefix, app_name=service.config.app_name), prefix=prefix)
        try:
            async with serve_app(app) as base_url, aiohttp.ClientSession(middlewares=[validator.middleware]) as http:
                if service.public_url is None:
                    service.public_url = base_url
                yield cls(service, pm, clock, base_url, http, validator, principals)
        finally:
            await service.close()
