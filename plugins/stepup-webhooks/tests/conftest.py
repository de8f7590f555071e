"""A real webhook receiver on loopback (aiohttp), which can be down, up, failing or holding
requests without answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

LOOPBACK = "127.0.0.1"


@attrs.define
class Delivery:
    headers: dict[str, str]
    body: str

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@attrs.define(eq=False)
class Receiver:
    """``arrived``: every request that reached it; ``accepted``: those it answered 2xx."""

    port: int = 0
    status: int = 204
    #: Hold requests without answering (a receiver that is slow, or a delivery in flight).
    hold: bool = False
    arrived: list[Delivery] = attrs.field(factory=list)
    accepted: list[Delivery] = attrs.field(factory=list)
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = attrs.field(factory=asyncio.Event)
    #: Bumped by ``down``: a request held across it is dropped, as its connection is gone.
    _generation: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery({k.lower(): v for k, v in request.headers.items()}, await request.text())
        self.arrived.append(delivery)
        generation = self._generation
        if self.hold:
            await self._release.wait()
        if generation != self._generation:
            raise web.HTTPServiceUnavailable()
        if 200 <= self.status < 300:
            self.accepted.append(delivery)
        return web.Response(status=self.status)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def down(self) -> None:
        self._generation += 1
        self._release.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._release = asyncio.Event()

    def unique_ids(self) -> set[str]:
        return {d.id for d in self.accepted}

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` distinct ids were accepted."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.unique_ids()) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(self.unique_ids())} of {count} webhooks arrived in {timeout} s")
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.up()
    yield receiver
    await receiver.down()


def webhooks_config(url: str, secret: str, **settings: Any) -> dict[str, Any]:
    endpoint = {"url": url, "secret": secret}
    endpoint.update(settings.pop("endpoint", {}))
    return {"plugins": {"webhooks": {"endpoints": [endpoint], "backoff_base": 0.05, "backoff_max": 0.2,
                                     "poll_interval": 0.1, **settings}}}
