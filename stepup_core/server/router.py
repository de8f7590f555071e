"""Routing and error handling shared by the adapters that have no router of their own (ASGI, WSGI).

:class:`Router` matches a method and a path below the prefix against the route table, the way
aiohttp's router does (a ``{name}`` segment matches one non-empty segment; HEAD is not GET); an
unknown path is 404 ``not_found`` and a known path with another method 405
``method_not_allowed`` with ``Allow``. :func:`dispatch` runs a handler and turns whatever it
raises into a problem: the same answers the aiohttp adapter's middleware gives.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from ..errors import ConfigError, HttpMethodNotAllowed, StepUpError
from .browser import preflight, with_cors
from .http import Answer, AnyIdentify, Mounted, Request
from .openapi import document_for
from .problems import RouteNotFound, internal_error, log, log_unexpected, problem_answer
from .routes import ROUTES, RouteSpec

if TYPE_CHECKING:
    from ..service import StepUpService

_SEGMENT = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def _pattern(path: str) -> re.Pattern[str]:
    out, last = [], 0
    for match in _SEGMENT.finditer(path):
        out.append(re.escape(path[last : match.start()]))
        out.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    out.append(re.escape(path[last:]))
    return re.compile("".join(out) + r"\Z")


@attrs.frozen
class Match:
    route: RouteSpec
    params: dict[str, str]


@attrs.define
class Router:
    """The route table, compiled once."""

    routes: tuple[RouteSpec, ...] = ROUTES
    _compiled: list[tuple[re.Pattern[str], RouteSpec]] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._compiled = [(_pattern(spec.path), spec) for spec in self.routes]

    @classmethod
    def of(cls, routes: Iterable[RouteSpec]) -> Router:
        return cls(tuple(routes))

    def match(self, method: str, path: str) -> Match:
        """The route for ``method`` at ``path`` (below the prefix: ``/check``), or the 404/405
        problem to answer."""
        allowed: list[str] = []
        for pattern, spec in self._compiled:
            found = pattern.match(path)
            if found is None:
                continue
            if spec.method == method:
                return Match(spec, found.groupdict())
            allowed.append(spec.method)
        if allowed:
            allowed = sorted(set(allowed))
            raise HttpMethodNotAllowed(f"{method} is not allowed here; use {', '.join(allowed)}", allowed=allowed)
        raise RouteNotFound("no stepup route at this path")


async def dispatch(spec: RouteSpec, request: Request) -> Answer:
    """Run ``spec``'s handler; every failure becomes problem+json: stepup's own errors with their
    status, anything unexpected a logged 500 with a generic detail."""
    try:
        return await spec.handler(request)
    except StepUpError as exc:
        return error_answer(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback in a response
        log_unexpected(request, exc)
        return problem_answer(internal_error())


def error_answer(request: Request, exc: StepUpError) -> Answer:
    if exc.status >= 500:
        log.error("%s %s failed: %s: %s", request.method, request.path, exc.code, exc)
    return problem_answer(exc)


def cors_origins(request: Request) -> frozenset[str]:
    return frozenset(request.service.config.server.cors_origins)


async def handle(router: Router, request: Request, below_prefix: str) -> Answer:
    """Route ``request`` (``below_prefix`` is its path after the prefix) and answer it, with
    CORS as ``[server] cors_origins`` says (preflights answered before any route)."""
    allowed = cors_origins(request)
    answered = preflight(request.method, request.headers, allowed)
    if answered is None:
        try:
            matched = router.match(request.method, below_prefix)
        except StepUpError as exc:
            answered = error_answer(request, exc)
        else:
            request.params = matched.params
            answered = await dispatch(matched.route, request)
        answered = with_cors(answered, request.headers.get("Origin"), allowed)
    return answered


def mount_point(
    service: StepUpService, identify: AnyIdentify, prefix: str, admin_identify: AnyIdentify | None = None
) -> Mounted:
    """The protocol mounted at ``prefix``, with the builder of its OpenAPI document (which
    describes the admin API where, and only where, it is mounted)."""
    if admin_identify is not None and admin_identify is identify:
        raise ConfigError("the admin API needs an identify of its own, never the users' identify")
    document = functools.partial(document_for, service, prefix, admin=admin_identify is not None)
    return Mounted(service, identify, prefix, document=document, admin_identify=admin_identify)


def routes_of(mounted: Mounted, routes: Iterable[RouteSpec] = ROUTES) -> tuple[RouteSpec, ...]:
    """The routes a mount serves: ``routes``, and the admin API's when an admin identify is set."""
    from .admin_routes import ADMIN_ROUTES

    return (*routes, *(ADMIN_ROUTES if mounted.admin_identify is not None else ()))
