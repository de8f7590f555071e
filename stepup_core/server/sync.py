"""The protocol and the guard for synchronous frameworks: WSGI, Flask, Django's sync views.

A synchronous view runs in a thread of the server's; stepup's service lives in a
:class:`~stepup_core.portal.Portal` (an event loop in a thread of its own). What must happen in
the request's thread happens there: the application's ``identify`` (it may read a session
through the framework's request, a database connection of that thread) and reading the body
(with its size limit), and a guard's transaction builder (it reads the request body). The rest
(the route's handler, the guard's decision) runs in the portal.

- :class:`SyncProtocol` answers one protocol request; framework integrations call it from a
  catch-all view under the prefix.
- :class:`StepUpWSGI` is the WSGI application built on it (no framework).
- :func:`guard_sync` is the guard for a synchronous view; :class:`SyncStepUp` holds what a
  framework integration needs (Flask's and Django's ``StepUp`` build on it).

Under WSGI the server's own address is not known for sure (``SERVER_NAME`` may be the caller's
``Host``), so redirect methods need ``[server] public_url``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import attrs

from ..errors import ConfigError, PayloadTooLarge, StepUpError
from .browser import preflight, with_cors
from .guard import Elevation, Gate, ServiceGate, TransactionBuilder, guard, refusal
from .http import (
    Answer,
    AnyIdentify,
    Mounted,
    Request,
    adopt_prefix,
    declared_length,
    headers_from,
    identify_argument,
    normalise_prefix,
    payload_too_large,
)
from .problems import RouteNotFound, problem_answer
from .router import Router, cors_origins, dispatch, error_answer, mount_point
from .routes import ROUTES, RouteSpec

if TYPE_CHECKING:
    from ..config import StepUpConfig
    from ..portal import HostedService, Portal
    from ..service import StepUpService


def is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


@attrs.frozen
class Resolved:
    """What a function of the application's answered in the request's thread (or raised),
    replayed wherever it is awaited: ``await resolved(anything)``."""

    value: Any = None
    error: BaseException | None = None

    async def __call__(self, _: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def resolve_here(fn: Callable[[Any], Any], argument: Any, portal: Portal) -> Resolved:
    """Run ``fn(argument)`` now, in the calling thread (an async one in the portal): the
    application's ``identify`` or transaction builder, which read the framework's request in
    its own thread."""
    try:
        if is_async_callable(fn):
            return Resolved(portal.call(_awaited, fn, argument))
        found = fn(argument)
        if inspect.isawaitable(found):  # a plain function answering an awaitable
            found = portal.call(_awaited_value, found)
        return Resolved(found)
    except Exception as exc:  # noqa: BLE001 - replayed where the answer is built
        return Resolved(error=exc)


def resolve_identify(identify: AnyIdentify, argument: Any, portal: Portal) -> Resolved:
    """:func:`resolve_here` for the application's ``identify``."""
    return resolve_here(identify, argument, portal)


async def _awaited(identify: Any, argument: Any) -> Any:
    return await identify(argument)


async def _awaited_value(value: Awaitable[Any]) -> Any:
    return await value


def read_limited(read: Callable[[int], bytes], declared: int | None, limit: int) -> Callable[[int], Awaitable[bytes]]:
    """Read a body in this thread, at most ``limit`` bytes (``declared`` is its Content-Length,
    None when unknown); the returned reader answers it, or 413, in the portal."""
    if declared is not None and declared > limit:
        too_large: PayloadTooLarge | None = PayloadTooLarge(
            f"the request body is {declared} bytes; the limit is {limit}", limit=limit
        )
        raw = b""
    else:
        raw = read(limit + 1)
        too_large = payload_too_large(limit) if len(raw) > limit else None

    async def reader(_: int) -> bytes:
        if too_large is not None:
            raise too_large
        return raw

    return reader


@attrs.define
class SyncProtocol:
    """The route table, answered from a synchronous thread with the service in ``portal``."""

    service: StepUpService
    portal: Portal
    identify: AnyIdentify
    prefix: str
    router: Router = attrs.field(factory=Router)
    mounted: Mounted = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.mounted = mount_point(self.service, self.identify, self.prefix)

    @classmethod
    def create(
        cls,
        service: StepUpService,
        portal: Portal,
        identify: AnyIdentify,
        *,
        prefix: str | None = None,
        routes: Iterable[RouteSpec] = ROUTES,
    ) -> SyncProtocol:
        return cls(service, portal, identify, adopt_prefix(service, prefix), Router.of(routes))

    def answer(
        self,
        *,
        method: str,
        below_prefix: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        query: Mapping[str, str],
        read: Callable[[int], bytes],
        native: Any,
        scheme: str = "http",
        server: tuple[str, int] | None = None,
    ) -> Answer:
        """Answer one request. ``read(n)`` reads at most ``n`` body bytes (in this thread);
        ``native`` is what ``identify`` receives."""
        request = Request(
            method=method.upper(),
            path=path,
            headers=headers_from(headers),
            mounted=self.mounted,
            query=query,
            native=native,
            scheme=scheme,
            server=server,
        )
        allowed = cors_origins(request)
        answered = preflight(request.method, request.headers, allowed)
        if answered is not None:
            return answered
        return with_cors(self._answer(request, below_prefix, read), request.headers.get("Origin"), allowed)

    def _answer(self, request: Request, below_prefix: str, read: Callable[[int], bytes]) -> Answer:
        try:
            matched = self.router.match(request.method, below_prefix)
        except StepUpError as exc:
            return error_answer(request, exc)
        request.params = matched.params
        if matched.route.authenticated and matched.route.auth == "session":
            resolved = resolve_identify(self.identify, identify_argument(request), self.portal)
            request.mounted = attrs.evolve(request.mounted, identify=resolved)
        if matched.route.request is not None:
            try:
                declared = declared_length(request.headers)
            except StepUpError as exc:
                return error_answer(request, exc)
            request.read_body = read_limited(read, declared, self.service.config.server.max_body_bytes)
        return self.portal.call(dispatch, matched.route, request)


def guard_sync(
    gate: Gate,
    portal: Portal,
    scope: str,
    identify: AnyIdentify,
    argument: Any,
    token: str | None,
    *,
    where: str,
    transaction: TransactionBuilder | None = None,
) -> Elevation | Answer:
    """The guard for a synchronous view: ``identify`` and the ``transaction`` builder run in this
    thread (the builder only for an identified caller), the decision in the portal. Never raises."""
    resolved = resolve_identify(identify, argument, portal)
    details: Resolved | None = None
    if transaction is not None and resolved.error is None and resolved.value is not None:
        details = resolve_here(transaction, argument, portal)
    return portal.call(guard, gate, scope, resolved, argument, token, where=where, transaction=details)


class SyncStepUp:
    """What a synchronous framework's integration holds (Flask's and Django's ``StepUp`` build on
    it): the application's ``identify``, a service living in a portal (or only a gate, say a
    :class:`~stepup_core.remote.RemoteGuard`), and the protocol it serves.

    :param config: the configuration to open a service from (in a portal of its own)...
    :param hosted: ...or a service already living in a portal.
    :param gate: who decides for the guards (default: the service).
    :param prefix: where the protocol is served (default ``server.prefix``).
    :param serve_protocol: False serves none (an application beside ``stepup serve``).
    """

    def __init__(
        self,
        *,
        identify: AnyIdentify,
        config: StepUpConfig | None = None,
        hosted: HostedService | None = None,
        gate: Gate | None = None,
        prefix: str | None = None,
        serve_protocol: bool = True,
        portal_name: str = "stepup",
    ) -> None:
        from ..portal import HostedService, Portal

        self.identify = identify
        self._owns_hosted = hosted is None and config is not None
        if hosted is None and config is not None:
            hosted = HostedService.open(config=config)
        self.hosted = hosted
        self.portal = hosted.portal if hosted is not None else Portal.start(portal_name)
        self._gate = gate if gate is not None else (ServiceGate(hosted.service) if hosted is not None else None)
        self.protocol: SyncProtocol | None = None
        if hosted is not None and serve_protocol:
            self.protocol = SyncProtocol.create(hosted.service, self.portal, identify, prefix=prefix)
        self.prefix = self.protocol.prefix if self.protocol is not None else normalise_prefix(prefix or "/stepup")

    @property
    def gate(self) -> Gate:
        if self._gate is None:
            raise ConfigError("stepup has no service: give it a configuration or a hosted service, or a gate")
        return self._gate

    def decide(
        self,
        scope: str,
        argument: Any,
        token: str | None,
        *,
        where: str,
        gate: Gate | None = None,
        transaction: TransactionBuilder | None = None,
    ) -> Elevation | Answer:
        """A synchronous view's guard: ``identify`` and the ``transaction`` builder here, the
        decision in the portal."""
        try:
            chosen = gate or self.gate
        except ConfigError as exc:
            return refusal(exc, scope=scope, where=where)
        return guard_sync(
            chosen, self.portal, scope, self.identify, argument, token, where=where, transaction=transaction
        )

    def close(self) -> None:
        """Stop the portal (and close the service this object opened, and the gate's connections)."""
        close_gate = getattr(self._gate, "close", None)
        if close_gate is not None and self.portal.running:
            self.portal.call(close_gate)
        if self._owns_hosted and self.hosted is not None:
            self.hosted.close()
        elif self.hosted is None:
            self.portal.close()


# --- WSGI --------------------------------------------------------------------------------------


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def environ_headers(environ: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), str(value)
    if environ.get("CONTENT_TYPE"):
        yield "Content-Type", str(environ["CONTENT_TYPE"])
    if environ.get("CONTENT_LENGTH"):
        yield "Content-Length", str(environ["CONTENT_LENGTH"])


class StepUpWSGI:
    """The stepup routes as a WSGI application (the service lives in ``portal``).

    Mount it at the prefix (Werkzeug's ``DispatcherMiddleware({"/stepup": app})``: the routes
    are then below ``SCRIPT_NAME``), or serve it with ``fallback`` for every other path.
    ``identify`` receives a :class:`~stepup_core.server.http.Request`; a plain function runs in
    the request's thread.
    """

    def __init__(
        self,
        service: StepUpService,
        portal: Portal,
        identify: AnyIdentify,
        *,
        prefix: str | None = None,
        fallback: Callable[..., Iterable[bytes]] | None = None,
        routes: Iterable[RouteSpec] = ROUTES,
    ) -> None:
        self.protocol = SyncProtocol.create(service, portal, identify, prefix=prefix, routes=routes)
        self.fallback = fallback

    def route_path(self, environ: Mapping[str, Any]) -> str | None:
        script = str(environ.get("SCRIPT_NAME", "") or "")
        below_root = str(environ.get("PATH_INFO", "") or "")
        prefix = self.protocol.prefix
        if script.rstrip("/").endswith(prefix):
            return below_root or "/"
        if below_root == prefix or below_root.startswith(prefix + "/"):
            return below_root[len(prefix) :] or "/"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        below = self.route_path(environ)
        if below is None:
            if self.fallback is not None:
                return self.fallback(environ, start_response)
            answer = problem_answer(RouteNotFound("no route at this path"))
        else:
            # PEP 3333: PATH_INFO is latin-1 decoded bytes; make it the text it was sent as.
            path_info = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace")
            below = below.encode("latin-1").decode("utf-8", "replace")
            query: dict[str, str] = {}
            for name, value in parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True):
                query.setdefault(name, value)
            stream = environ["wsgi.input"]
            try:
                length: int | None = int(environ.get("CONTENT_LENGTH") or "")
            except ValueError:
                length = None

            def read(limit: int) -> bytes:
                if length is not None:
                    return bytes(stream.read(min(limit, length)))
                # PEP 3333: without a length the body is empty, unless the server ends the stream.
                return bytes(stream.read(limit)) if environ.get("wsgi.input_terminated") else b""

            request_answer = self.protocol.answer(
                method=str(environ.get("REQUEST_METHOD", "GET")),
                below_prefix=below,
                path=str(environ.get("SCRIPT_NAME", "")) + path_info,
                headers=list(environ_headers(environ)),
                query=query,
                read=read,
                native=None,
                scheme=str(environ.get("wsgi.url_scheme", "http")),
                # SERVER_NAME may come from the caller's Host header: never used for callbacks
                # (set [server] public_url for redirect methods).
                server=None,
            )
            answer = request_answer
        headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
        start_response(_status_line(answer.status), headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [answer.body]
