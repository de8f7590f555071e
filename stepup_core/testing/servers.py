"""Real servers on loopback for tests: uvicorn for ASGI applications, a threaded WSGI server.

::

    async with serve_asgi(app) as base_url: ...        # uvicorn, in this event loop
    with serve_wsgi(app) as base_url: ...               # wsgiref, threaded, in a thread of its own

Each picks a free port and stops when the block ends. ``serve_asgi`` needs ``uvicorn`` (a test
dependency of stepup-core).
"""

from __future__ import annotations

import asyncio
import contextlib
import socketserver
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn in the running event loop; yields its base URL.
    ``lifespan="on"`` runs the application's startup and shutdown."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, lifespan=lifespan, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped the server
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # tests send 100 requests at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving_in_thread(server: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run a ``socketserver``-style server (``serve_forever``, ``shutdown``, ``server_close``;
    Werkzeug's and Django's are) in a background thread; yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_wsgi(app: Callable[..., Any], host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the WSGI ``app`` (one thread per request) in a background thread; yields its base URL."""
    server = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    with serving_in_thread(server, host) as base_url:
        yield base_url
