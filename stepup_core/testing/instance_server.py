"""One stepup server process of the multi-instance tests (:mod:`stepup_core.testing.multi_instance`).

``python -m stepup_core.testing.instance_server CONFIG NAME`` serves the stepup routes under
``/stepup`` and two
application routes guarded by ``requires_scope`` on a free loopback port, prints
``LISTENING <port>`` once it accepts connections, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from ..config import load_config
from ..identify import identify_from_config
from ..server import build_app, requires_scope, serve_app
from ..service import StepUpService


async def main(config_path: str, name: str) -> None:
    config = load_config(config_path)
    service = await StepUpService.create(config)
    try:
        app = build_app(service, identify_from_config(config.identify))

        @requires_scope("user:update")
        async def profile(request: web.Request) -> web.Response:
            return web.json_response({"instance": name, "action": "profile"})

        @requires_scope("wallet:export")
        async def export_key(request: web.Request) -> web.Response:
            return web.json_response({"instance": name, "action": "export"})

        app.router.add_get("/app/profile", profile)
        app.router.add_post("/app/export", export_key)
        async with serve_app(app) as base_url:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            print(f"LISTENING {base_url.rsplit(':', 1)[1]}", flush=True)
            await stop.wait()
    finally:
        await service.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
