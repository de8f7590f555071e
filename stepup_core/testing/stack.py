"""A whole stepup stack for tests: a service, the HTTP server on loopback, and clients.

::

    async with StepUpStack.start(plugins=[stepup_totp.plugin]) as stack:
        client = stack.client("alice")
        await client.check_step_up_auth("user:update")

``StepUpStack.serve(service)`` serves a service the test built itself (its own store, clock or
plugin manager) the same way, and leaves closing it to the test. ``protected`` adds the
application's own routes guarded by ``requires_scope``; ``setup_app`` adds any other.

Every answer a client of the stack receives from stepup's routes is checked against stepup's
own OpenAPI document (:class:`~stepup_core.testing.responses.ResponseValidator`): a test fails on
an undocumented answer. Principals are identified by static bearer tokens, one per user name
(:func:`session_token`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import attrs
import pluggy
from aiohttp import web

from ..client import ScriptedPrompter, StepUpClient
from ..clock import Clock, ManualClock
from ..config import config_from_mapping
from ..models import Principal
from ..plugins import get_plugin_manager
from ..server import TOKEN_HEADER, build_app, build_document, principal_from, requires_scope, serve_app
from ..server.identify import StaticTokenIdentify
from ..service import StepUpService
from .responses import ResponseValidator

DEFAULT_USERS = ("alice", "bob")
#: The service credential :meth:`StepUpStack.start` configures for ``POST {prefix}/introspect``
#: (client name ``stack``), unless the configuration names its own clients.
SERVICE_CREDENTIAL = "sis_stack-test-service-credential-0000000000000"


def session_token(user: str) -> str:
    """The static bearer token the stack gives ``user`` (at least 16 characters)."""
    return f"{user}-test-session-token".ljust(24, "0")


def _principals(users: Iterable[str | Principal]) -> dict[str, Principal]:
    """A user name becomes ``Principal(name, "<name>-session")``; a Principal (say, with a
    ``sign_in_credential_id``) is taken as it is, under its ``user_id``."""
    principals = [u if isinstance(u, Principal) else Principal(u, f"{u}-session") for u in users]
    return {p.user_id: p for p in principals}


def _add_protected(app: web.Application, path: str, scope: str, calls: list[str]) -> None:
    @requires_scope(scope)
    async def handler(request: web.Request) -> web.Response:
        calls.append(path)
        principal = principal_from(request)
        return web.json_response({"path": path, "scope": scope, "user": principal and principal.user_id})

    app.router.add_post(path, handler)


@attrs.define
class StepUpStack:
    service: StepUpService
    pm: pluggy.PluginManager
    #: The service's clock: a :class:`ManualClock` from :meth:`start`.
    clock: Clock
    base_url: str
    http: aiohttp.ClientSession
    validator: ResponseValidator
    principals: dict[str, Principal]
    #: The paths of the ``protected`` routes, once per call they let through.
    calls: list[str] = attrs.field(factory=list)

    def principal(self, user: str) -> Principal:
        return self.principals[user]

    def headers(self, user: str = "alice", token: str | None = None) -> dict[str, str]:
        """``user``'s session header, and the elevated-access token when one is given."""
        headers = {"Authorization": f"Bearer {session_token(user)}"}
        if token is not None:
            headers[TOKEN_HEADER] = token
        return headers

    async def api(
        self, user: str, method: str, path: str, json: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """Call a stepup route by hand (``path`` below the prefix, e.g. ``/challenges``) as
        ``user``; returns the status and the JSON body (None when there is none)."""
        url = f"{self.base_url}{self.service.config.server.prefix}{path}"
        async with self.http.request(method, url, json=json, headers=self.headers(user, token)) as response:
            body = await response.json() if response.content_type.endswith("json") else None
            return response.status, body

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
        users: Iterable[str | Principal] = DEFAULT_USERS,
        clock: ManualClock | None = None,
        protected: Mapping[str, str] | None = None,
        setup_app: Callable[[web.Application], None] | None = None,
    ) -> AsyncIterator[StepUpStack]:
        """Start a service on the memory store (``config`` overrides the defaults), mount it on an
        application and serve it on loopback. ``protected`` maps the application's own paths to
        the scope each needs: a POST there answers ``{"path", "scope", "user"}`` once
        ``requires_scope`` lets it through and is recorded in :attr:`calls`. ``setup_app`` adds
        any other route."""
        clock = clock or ManualClock()
        pm = get_plugin_manager(load_entrypoints=False)
        for index, plugin in enumerate(plugins):
            if not pm.is_registered(plugin):
                pm.register(plugin, name=f"stack-plugin-{index}")
        from ..introspection import credential_hash

        settings: dict[str, Any] = {
            "store": "memory:",
            "secret_key": secrets.token_hex(32),
            "introspection": {"clients": {"stack": credential_hash(SERVICE_CREDENTIAL)}},
        }
        settings.update(config or {})
        service = await StepUpService.create(config_from_mapping(settings), pm=pm, clock=clock)
        try:
            async with cls.serve(service, users=users, protected=protected, setup_app=setup_app) as stack:
                yield stack
        finally:
            await service.close()

    @classmethod
    @asynccontextmanager
    async def serve(
        cls,
        service: StepUpService,
        *,
        users: Iterable[str | Principal] = DEFAULT_USERS,
        protected: Mapping[str, str] | None = None,
        setup_app: Callable[[web.Application], None] | None = None,
    ) -> AsyncIterator[StepUpStack]:
        """Serve an existing ``service`` on loopback (the caller closes the service). ``users``
        are names or :class:`Principal` objects; clients use the service's plugin manager;
        ``protected`` and ``setup_app`` are as for :meth:`start`."""
        principals = _principals(users)
        identify = StaticTokenIdentify.from_mapping({session_token(u): p for u, p in principals.items()})
        app = build_app(service, identify)
        calls: list[str] = []
        for path, scope in (protected or {}).items():
            _add_protected(app, path, scope, calls)
        if setup_app is not None:
            setup_app(app)
        prefix = service.config.server.prefix
        validator = ResponseValidator(build_document(prefix, app_name=service.config.app_name), prefix=prefix)
        async with serve_app(app) as base_url, aiohttp.ClientSession(middlewares=[validator.middleware]) as http:
            if service.public_url is None:
                service.public_url = base_url
            yield cls(service, service.pm, service.clock, base_url, http, validator, principals, calls)
