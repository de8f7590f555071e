"""The aiohttp adapter: the route table as a sub-application, answers as ``web.Response``.

:func:`mount` adds one sub-application under the prefix; each route of
:data:`~stepup_core.server.routes.ROUTES` is registered on its router with a small wrapper that
builds a :class:`~stepup_core.server.http.Request` and writes the
:class:`~stepup_core.server.http.Answer` back. aiohttp's own refusals (no route, wrong method,
a body past ``client_max_size``) become the same problems the other adapters answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import ConfigError, HttpMethodNotAllowed, InvalidScope, MalformedRequest, PayloadTooLarge, StepUpError
from .browser import cors_headers, preflight
from .http import Answer, Identify, Mounted, Request, adopt_prefix, payload_too_large
from .problems import RouteNotFound, internal_error, log_unexpected, problem_answer
from .router import mount_point, routes_of
from .routes import RouteSpec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from aiohttp.typedefs import Middleware

    from ..service import StepUpService

log = logging.getLogger("stepup.server")

SERVICE_KEY: web.AppKey[StepUpService] = web.AppKey("stepup_service")
IDENTIFY_KEY: web.AppKey[Identify] = web.AppKey("stepup_identify")
PREFIX_KEY: web.AppKey[str] = web.AppKey("stepup_prefix")
MOUNTED_KEY: web.AppKey[Mounted] = web.AppKey("stepup_mounted", Mounted)

#: The attribute ``requires_scope`` sets on the handler it returns: the scope it guards. It
#: survives further decorators that use ``functools.wraps``.
SCOPE_ATTRIBUTE = "__stepup_scope__"

_READ_CHUNK = 16 * 1024
_NOT_MOUNTED = "stepup is not mounted on this application: call stepup_core.server.mount(app, service, identify)"


def aiohttp_response(answer: Answer) -> web.Response:
    """An :class:`Answer` as an aiohttp response (headers, content type and body as they are)."""
    response = web.Response(status=answer.status, body=answer.body or None)
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


def body_reader(request: web.BaseRequest) -> Callable[[int], Awaitable[bytes]]:
    async def read(limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(_READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    return read


def _server_address(request: web.BaseRequest) -> tuple[str, int] | None:
    if request.transport is None:
        return None
    sockname = request.transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return None
    return str(sockname[0]), int(sockname[1])


def neutral_request(request: web.Request, mounted: Mounted) -> Request:
    """The framework-neutral view of an aiohttp request (``identify`` still receives aiohttp's)."""
    return Request(
        method=request.method,
        path=request.path,
        headers=request.headers,
        mounted=mounted,
        query=dict(request.query),
        params=dict(request.match_info),
        read_body=body_reader(request),
        native=request,
        scheme=request.scheme,
        server=_server_address(request),
    )


def mounted_of(request: web.Request) -> Mounted:
    """The stepup mounted on the application serving ``request``."""
    try:
        return request.config_dict[MOUNTED_KEY]
    except KeyError:
        raise ConfigError(_NOT_MOUNTED) from None


def _route_handler(spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    # Errors leave the handler as exceptions: the plugins' middlewares see them (their code and
    # status) before problem_middleware turns them into the same problems dispatch() answers.
    async def handler(request: web.Request) -> web.StreamResponse:
        return aiohttp_response(await spec.handler(neutral_request(request, mounted_of(request))))

    handler.__name__ = handler.__qualname__ = spec.handler.__name__
    return handler


def error_from_http(exc: web.HTTPException) -> StepUpError:
    """aiohttp's own refusals (no route, wrong method, body too large) as stepup errors."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return HttpMethodNotAllowed(f"{exc.method} is not allowed here; use {', '.join(allowed)}", allowed=allowed)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("the request body is too large")
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound("no stepup route at this path")
    if exc.status == 400:
        return MalformedRequest(exc.text or "malformed request")
    return internal_error()


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure under the prefix becomes problem+json: ours, aiohttp's (404, 405, 413) and
    the unexpected (500, logged, with a generic detail)."""
    try:
        return await handler(request)
    except StepUpError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s: %s", request.method, request.path, exc.code, exc)
        return aiohttp_response(problem_answer(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return aiohttp_response(problem_answer(error_from_http(exc)))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback in a response
        log_unexpected(request, exc)
        return aiohttp_response(problem_answer(internal_error()))


def cors_middleware(origins: Iterable[str]) -> Middleware:
    """CORS for the stepup routes (:func:`~stepup_core.server.browser.preflight` and
    :func:`~stepup_core.server.browser.cors_headers`, as every adapter does it)."""
    allowed = frozenset(origins)

    @web.middleware
    async def cors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        refusal = preflight(request.method, request.headers, allowed)
        if refusal is not None:
            return aiohttp_response(refusal)
        origin = request.headers.get("Origin")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and the like pass through with the headers
            exc.headers.update(cors_headers(exc.headers.get("Vary"), origin, allowed))
            raise
        response.headers.update(cors_headers(response.headers.get("Vary"), origin, allowed))
        return response

    return cors


def _plugin_middlewares(service: StepUpService) -> list[Middleware]:
    found: list[Middleware] = []
    for answer in service.pm.hook.stepup_server_middlewares(config=service.config):
        found.extend(answer or ())
    return found


def _admin_identify(app: web.Application, service: StepUpService, given: Identify | None) -> Identify | None:
    """The operators' identify: given, or built from ``[admin.identify]`` when ``[admin] enabled``."""
    if given is not None or not service.config.admin.enabled or service.config.admin.identify is None:
        return given
    from .identify import JwtIdentify, identify_from_config

    built = identify_from_config(service.config.admin.identify, clock=service.clock)
    if isinstance(built, JwtIdentify):

        async def close_admin_identify(_: web.Application) -> None:
            await built.close()

        app.on_cleanup.append(close_admin_identify)
    return built


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
    prefix = adopt_prefix(service, prefix)
    existing = app.get(SERVICE_KEY)
    if existing is not None and existing is not service:
        raise ConfigError("this application already has another stepup service mounted")
    mounted = mount_point(service, identify, prefix, _admin_identify(app, service, admin_identify))
    # CORS outermost, so that problems and 304s carry its headers too. With no origins listed
    # it only answers preflights: 403 origin_not_allowed, saying what to configure.
    middlewares: list[Middleware] = [
        cors_middleware(service.config.server.cors_origins),
        problem_middleware,
        *_plugin_middlewares(service),
    ]
    sub = web.Application(middlewares=middlewares)
    sub[SERVICE_KEY] = service
    sub[IDENTIFY_KEY] = identify
    sub[PREFIX_KEY] = prefix
    sub[MOUNTED_KEY] = mounted
    for spec in routes_of(mounted):
        sub.router.add_route(spec.method, spec.path, _route_handler(spec), name=spec.operation_id)
    app[SERVICE_KEY] = service
    app[IDENTIFY_KEY] = identify
    app[PREFIX_KEY] = prefix
    app[MOUNTED_KEY] = mounted
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


# --- the scopes of guarded routes, checked when the application starts ------------------


def _handler_scopes(method: str, handler: Any) -> list[tuple[str, str]]:
    """``(method, scope)`` pairs ``requires_scope`` guards a route's handler with: a function, or
    the methods of a ``web.View`` (``post`` -> ``POST``)."""
    if isinstance(handler, type):
        found = []
        for name in dir(handler):
            scope = getattr(getattr(handler, name, None), SCOPE_ATTRIBUTE, None)
            if isinstance(scope, str):
                found.append((name.upper(), scope))
        return found
    scope = getattr(handler, SCOPE_ATTRIBUTE, None)
    return [(method, scope)] if isinstance(scope, str) else []


def guarded_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """``(method, path, scope)`` of every ``requires_scope`` route in ``app`` and its sub-applications."""
    out: list[tuple[str, str, str]] = []
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        if isinstance(sub, web.Application):
            out.extend(guarded_routes(sub))  # its paths already carry the prefix
            continue
        for route in resource:
            guards = _handler_scopes(route.method, route.handler)
            out.extend((method, resource.canonical, scope) for method, scope in guards)
    return out


async def check_guarded_scopes(app: web.Application) -> None:
    """``on_startup`` of an application with stepup mounted: every scope a route is guarded with
    is known to the service, else :class:`ConfigError` naming the routes, so the start fails."""
    service = app[SERVICE_KEY]
    unknown: dict[tuple[str, str], list[str]] = {}
    for method, path, scope in guarded_routes(app):
        if not _known(service, scope):
            unknown.setdefault((path, scope), []).append(method)
    if unknown:
        routes = "; ".join(
            f"{'/'.join(sorted(methods))} {path} needs {scope!r}" for (path, scope), methods in unknown.items()
        )
        raise ConfigError(
            f"protected routes use scopes stepup does not know: {routes}. Declare application scopes "
            'in stepup.toml (declared_scopes, or a [scopes."<scope>"] table), or fix the name'
        )


def _known(service: Any, scope: str) -> bool:
    try:
        service.policies.validate(scope)
    except InvalidScope:
        return False
    return True
