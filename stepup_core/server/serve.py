"""Run an aiohttp application on a TCP port (``stepup serve``, ``stepup demo`` and tests)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

#: The logger of :class:`AccessLogger`: one INFO line per request.
ACCESS_LOG = logging.getLogger("stepup.access")


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path, status and time taken, ``POST /stepup/verify 200 4.1 ms``.

    Deliberately nothing else: no header value (sessions, elevated tokens), no query string (a
    provider's ``code`` and ``state`` on a redirect callback), no body. The path is logged as it
    arrived, percent-encoded, so a crafted path cannot forge a log line.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1f ms", request.method, request.rel_url.raw_path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


@asynccontextmanager
async def serve_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    access_log: logging.Logger | None = None,
) -> AsyncIterator[str]:
    """Run ``app`` on ``host`` (a free port unless given), or on ``sock``, a socket already bound
    (say, to learn the port before the application is built), until the block ends; yields its
    base URL.

    :param access_log: where :class:`AccessLogger` writes a line per request (``stepup serve``
        passes :data:`ACCESS_LOG`); None logs no request.
    """
    if access_log is None:
        runner = web.AppRunner(app, access_log=None)
    else:
        runner = web.AppRunner(app, access_log=access_log, access_log_class=AccessLogger)
    await runner.setup()
    try:
        site: web.BaseSite = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        yield f"http://{shown}:{bound[1]}"
    finally:
        await runner.cleanup()
