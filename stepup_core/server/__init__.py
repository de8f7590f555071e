"""stepup over HTTP (aiohttp): the protocol's routes, ``requires_scope`` and ``openapi.json``.

Mount the routes into an existing application with one call::

    from aiohttp import web
    from stepup_core.server import mount, requires_scope

    app = web.Application()
    mount(app, service, identify)          # routes under /stepup

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response: ...

``identify`` is the application's ``async (request) -> Principal | None``: stepup never owns
sessions. Every error is ``application/problem+json`` with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import ConfigError, StepUpError
from .admin_routes import ADMIN_IDENTIFY_KEY, ADMIN_ROUTES
from .browser import ASSETS_KEY, AssetCache, cors_middleware
from .http import DOCUMENT_KEY, IDENTIFY_KEY, PREFIX_KEY, SERVICE_KEY, TOKEN_HEADER, Identify
from .openapi import build_document, document_for
from .problems import (
    PROBLEM_CONTENT_TYPE,
    error_from_http,
    internal_error,
    log_unexpected,
    problem_response,
    step_up_challenge,
)
from .protect import (
    GRANT_KEY,
    PRINCIPAL_KEY,
    check_guarded_scopes,
    grant_of,
    guarded_routes,
    principal_from,
    requires_scope,
)
from .routes import ROUTES, Handler
from .serve import serve_app

if TYPE_CHECKING:
    from ..service import StepUpService

__all__ = [
    "GRANT_KEY",
    "IDENTIFY_KEY",
    "PREFIX_KEY",
    "PRINCIPAL_KEY",
    "PROBLEM_CONTENT_TYPE",
    "SERVICE_KEY",
    "TOKEN_HEADER",
    "Identify",
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

log = logging.getLogger("stepup.server")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under the prefix becomes problem+json: ours, aiohttp's (404, 405, 413) and
    the unexpected (500, logged, with a generic detail)."""
    try:
        return await handler(request)
    except StepUpError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s: %s", request.method, request.path, exc.code, exc)
        return problem_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(error_from_http(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback in a response
        log_unexpected(request, exc)
        return problem_response(internal_error())


def _normalise_prefix(prefix: str) -> str:
    cleaned = "/" + prefix.strip().strip("/")
    if cleaned == "/":
        raise ConfigError("the stepup prefix must be a path below the root, like '/stepup'")
    return cleaned


def _plugin_middlewares(service: StepUpService) -> list[Middleware]:
    found: list[Middleware] = []
    for answer in service.pm.hook.stepup_server_middlewares(config=service.config):
        found.extend(answer or ())
    return found


def mount(
    app: web.Application,
    service: StepUpService,
    identify: Identify,
    *,
    prefix: str | None = None,
    admin_identify: Identify | None = None,
) -> None:
    """Add the stepup routes to ``app`` under ``prefix`` (default ``server.prefix``: ``/stepup``).

    :param app: the application (not yet started).
    :param service: the :class:`~stepup_core.service.StepUpService`; the application closes it.
    :param identify: ``async (request) -> Principal | None``; None answers 401 ``unauthenticated``.
    :param admin_identify: identifies operators for the admin API (``{prefix}/admin/...``),
        whose principal's ``user_id`` names the operator. The admin API is mounted only with
        one: given here, or built from ``[admin.identify]`` when ``[admin] enabled = true``. It
        must not be ``identify``: a user's session never reaches the admin API.

    The routes live in a sub-application with its own error middleware, so the application's
    other routes are untouched. When ``app`` starts, the scopes its ``requires_scope`` routes use
    are checked (:func:`check_guarded_scopes`): an unknown scope stops the start. With
    ``[server] cors_origins`` set, the stepup routes answer cross-origin calls from those origins
    (the application's own routes are its business).
    """
    prefix = _normalise_prefix(prefix or service.config.server.prefix)
    if prefix != service.config.server.prefix:
        # Redirect callbacks are built from the configured prefix: keep it in step with the mount.
        service.config = attrs.evolve(service.config, server=attrs.evolve(service.config.server, prefix=prefix))
    existing = app.get(SERVICE_KEY)
    if existing is not None and existing is not service:
        raise ConfigError("this application already has another stepup service mounted")
    # CORS outermost, so that problems and 304s carry its headers too. With no origins listed
    # it only answers preflights: 403 origin_not_allowed, saying what to configure.
    middlewares: list[Middleware] = [
        cors_middleware(service.config.server.cors_origins),
        problem_middleware,
        *_plugin_middlewares(service),
    ]
    sub = web.Application(middlewares=middlewares)
    sub[ASSETS_KEY] = AssetCache()
    sub[SERVICE_KEY] = service
    sub[IDENTIFY_KEY] = identify
    sub[PREFIX_KEY] = prefix
    for spec in ROUTES:
        sub.router.add_route(spec.method, spec.path, spec.handler, name=spec.operation_id)
    if admin_identify is None and service.config.admin.enabled and service.config.admin.identify is not None:
        from .identify import JwtIdentify, identify_from_config

        built = identify_from_config(service.config.admin.identify, clock=service.clock)
        if isinstance(built, JwtIdentify):

            async def close_admin_identify(_: web.Application) -> None:
                await built.close()

            app.on_cleanup.append(close_admin_identify)
        admin_identify = built
    if admin_identify is not None:
        if admin_identify is identify:
            raise ConfigError("the admin API needs an identify of its own, never the users' identify")
        sub[ADMIN_IDENTIFY_KEY] = admin_identify
        for spec in ADMIN_ROUTES:
            sub.router.add_route(spec.method, spec.path, spec.handler, name=spec.operation_id)
    # The admin API is documented where it is mounted, and only there.
    document: Callable[[], dict[str, Any]] = functools.partial(
        document_for, service, prefix, admin=admin_identify is not None
    )
    sub[DOCUMENT_KEY] = document
    app[SERVICE_KEY] = service
    app[IDENTIFY_KEY] = identify
    app[PREFIX_KEY] = prefix
    app.add_subapp(prefix, sub)
    if existing is None:
        app.on_startup.append(check_guarded_scopes)


def build_app(
    service: StepUpService,
    identify: Identify,
    *,
    prefix: str | None = None,
    admin_identify: Identify | None = None,
) -> web.Application:
    """A new application with stepup mounted; request bodies are capped at ``server.max_body_bytes``."""
    app = web.Application(client_max_size=service.config.server.max_body_bytes)
    mount(app, service, identify, prefix=prefix, admin_identify=admin_identify)
    return app

