"""The ASGI adapter: the stepup protocol as a plain ASGI 3 application, with no framework.

Serve it on its own, mount it in any ASGI framework at the prefix, or put it in front of an
application that has no mounting of its own::

    from stepup_core.server.asgi import StepUpASGI

    stepup = StepUpASGI(service, identify)                   # routes under /stepup

    app.mount("/stepup", stepup)                             # Starlette, FastAPI, Litestar
    application = StepUpASGI(service, identify, fallback=get_asgi_application())   # Django

``identify`` receives a :class:`~stepup_core.server.http.Request` (``headers``, ``cookies``, and
the ASGI scope as ``native_scope``); the framework integrations hand it their own request
instead. Paths are matched below where the application is mounted: when the ASGI ``root_path``
ends with the prefix (Starlette's ``Mount("/stepup", ...)``) the routes are below it, otherwise
the path must start with the prefix. Anything else goes to ``fallback``, or is a 404 problem.

The application answers the lifespan protocol (forwarding it to ``fallback`` when there is one)
but leaves the service to its owner: open it before serving, close it after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import attrs

from ..errors import MalformedRequest
from .http import Answer, AnyIdentify, Request, adopt_prefix, headers_from, payload_too_large
from .problems import RouteNotFound, problem_answer
from .router import Router, handle, mount_point, routes_of
from .routes import ROUTES, RouteSpec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..service import StepUpService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@attrs.define(eq=False)
class AsgiRequest(Request):
    """A :class:`Request` that also carries its ASGI scope (``native_scope``), so an ``identify``
    written for a framework can build that framework's request from it."""

    native_scope: Scope = attrs.field(factory=dict, kw_only=True)


def body_reader(receive: Receive) -> Callable[[int], Awaitable[bytes]]:
    async def read(limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise MalformedRequest("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    return read


async def send_answer(send: Send, answer: Answer) -> None:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _query(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        out.setdefault(name, value)
    return out


class StepUpASGI:
    """The stepup routes as an ASGI application.

    :param service: the :class:`~stepup_core.service.StepUpService` (its owner opens and closes it).
    :param identify: ``async (request) -> Principal | None``.
    :param prefix: where the routes live (default ``server.prefix``: ``/stepup``).
    :param fallback: the ASGI application for every other path (and for websockets).
    :param routes: the route table (default: all of :data:`~stepup_core.server.routes.ROUTES`).
    :param admin_identify: identifies operators; with it the admin API is served too.
    """

    def __init__(
        self,
        service: StepUpService,
        identify: AnyIdentify,
        *,
        prefix: str | None = None,
        fallback: ASGIApp | None = None,
        routes: Iterable[RouteSpec] = ROUTES,
        identify_argument: Callable[[AsgiRequest], Any] | None = None,
        admin_identify: AnyIdentify | None = None,
    ) -> None:
        self.mounted = mount_point(service, identify, adopt_prefix(service, prefix), admin_identify)
        self.router = Router.of(routes_of(self.mounted, routes))
        self.fallback = fallback
        #: Builds what ``identify`` receives from the request (default: the request itself).
        self.identify_argument = identify_argument

    @property
    def prefix(self) -> str:
        return self.mounted.prefix

    def route_path(self, scope: Scope) -> str | None:
        """The path below the prefix (``/check``), or None when the request is not stepup's."""
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "") or ""
        # Servers that strip root_path from path leave it as it is.
        below_root = path[len(root) :] if root and path.startswith(root) else path
        prefix = self.mounted.prefix
        if root.rstrip("/").endswith(prefix):
            return below_root or "/"
        if below_root == prefix or below_root.startswith(prefix + "/"):
            return below_root[len(prefix) :] or "/"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        below = self.route_path(scope) if kind == "http" else None
        if below is None:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            elif kind == "http":
                await send_answer(send, problem_answer(RouteNotFound("no route at this path")))
            return
        server = scope.get("server")
        request = AsgiRequest(
            native_scope=scope,
            method=str(scope.get("method", "GET")).upper(),
            path=scope.get("path", ""),
            headers=headers_from((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())),
            mounted=self.mounted,
            query=_query(scope.get("query_string", b"")),
            read_body=body_reader(receive),
            scheme=scope.get("scheme", "http"),
            server=(str(server[0]), int(server[1])) if server and len(server) == 2 and server[1] is not None else None,
        )
        if self.identify_argument is not None:
            request.native = self.identify_argument(request)
        await send_answer(send, await handle(self.router, request, below))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
