"""Run an aiohttp application on a TCP port (``stepup serve``, ``stepup demo`` and tests)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Run ``app`` on ``host`` (a free port unless given), or on ``sock``, a socket already bound
    (say, to learn the port before the application is built), until the block ends; yields its
    base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site: web.BaseSite = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        yield f"http://{shown}:{bound[1]}"
    finally:
        await runner.cleanup()
