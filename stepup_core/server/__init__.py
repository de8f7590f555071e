"""stepup over HTTP: the protocol's routes, guards for the application's own routes, ``openapi.json``.

The protocol is one route table (:mod:`~stepup_core.server.routes`) over a framework-neutral
request and answer (:mod:`~stepup_core.server.http`); adapters serve it:

- aiohttp: :func:`mount` adds the routes to an application under the prefix;
- ASGI (Starlette, FastAPI, Django, Litestar, Quart, or a bare ASGI server):
  :class:`~stepup_core.server.asgi.StepUpASGI`, with no framework dependency;
- WSGI (Flask, Django): :class:`~stepup_core.server.wsgi.StepUpWSGI`.

Mount the routes into an aiohttp application with one call::

    from aiohttp import web
    from stepup_core.server import mount, requires_scope

    app = web.Application()
    mount(app, service, identify)          # routes under /stepup

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response: ...

``identify`` is the application's ``async (request) -> Principal | None``: stepup never owns
sessions. Every error is ``application/problem+json`` with a stable ``code``.

Names are imported when first used, so ``stepup_core.server.asgi`` does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aiohttp_adapter import (
        IDENTIFY_KEY,
        MOUNTED_KEY,
        PREFIX_KEY,
        SERVICE_KEY,
        build_app,
        mount,
        problem_middleware,
    )
    from .guard import Elevation, Gate, ServiceGate
    from .http import TOKEN_HEADER, Answer, Identify, Mounted, Request
    from .openapi import build_document, document_for
    from .problems import PROBLEM_CONTENT_TYPE, step_up_challenge
    from .protect import (
        GRANT_KEY,
        PRINCIPAL_KEY,
        check_guarded_scopes,
        grant_of,
        guarded_routes,
        principal_from,
        requires_scope,
    )
    from .serve import serve_app

_WHERE = {
    "IDENTIFY_KEY": "aiohttp_adapter",
    "MOUNTED_KEY": "aiohttp_adapter",
    "PREFIX_KEY": "aiohttp_adapter",
    "SERVICE_KEY": "aiohttp_adapter",
    "build_app": "aiohttp_adapter",
    "mount": "aiohttp_adapter",
    "problem_middleware": "aiohttp_adapter",
    "Elevation": "guard",
    "Gate": "guard",
    "ServiceGate": "guard",
    "TOKEN_HEADER": "http",
    "Answer": "http",
    "Identify": "http",
    "Mounted": "http",
    "Request": "http",
    "build_document": "openapi",
    "document_for": "openapi",
    "PROBLEM_CONTENT_TYPE": "problems",
    "step_up_challenge": "problems",
    "GRANT_KEY": "protect",
    "PRINCIPAL_KEY": "protect",
    "grant_of": "protect",
    "check_guarded_scopes": "protect",
    "guarded_routes": "protect",
    "principal_from": "protect",
    "requires_scope": "protect",
    "serve_app": "serve",
}

__all__ = [
    "GRANT_KEY",
    "IDENTIFY_KEY",
    "MOUNTED_KEY",
    "PREFIX_KEY",
    "PRINCIPAL_KEY",
    "PROBLEM_CONTENT_TYPE",
    "SERVICE_KEY",
    "TOKEN_HEADER",
    "Answer",
    "Elevation",
    "Gate",
    "Identify",
    "Mounted",
    "Request",
    "ServiceGate",
    "build_app",
    "build_document",
    "check_guarded_scopes",
    "document_for",
    "grant_of",
    "guarded_routes",
    "mount",
    "principal_from",
    "problem_middleware",
    "requires_scope",
    "serve_app",
    "step_up_challenge",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
