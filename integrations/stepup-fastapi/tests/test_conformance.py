"""stepup's protected-route conformance suite against the FastAPI dependency and the Starlette
decorator, each application (``stepup_fastapi_testapps``, beside this file) served by uvicorn on
loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stepup_fastapi import StepUp
from stepup_fastapi_testapps import fastapi_app, starlette_app

from stepup_core.testing.protected import (
    ProtectedRouteSuite,
    ProtectedTarget,
    conformance_service,
    header_identify,
    service_target,
)
from stepup_core.testing.servers import serve_asgi


class TestFastAPIDependency(ProtectedRouteSuite):
    adapter = "fastapi (uvicorn)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        async with (
            conformance_service(tmp_path) as (service, store),
            serve_asgi(fastapi_app(StepUp(header_identify, service=service))) as base_url,
        ):
            yield service_target(base_url, service, store)


class TestStarletteDecorator(ProtectedRouteSuite):
    adapter = "starlette (uvicorn)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        async with (
            conformance_service(tmp_path) as (service, store),
            serve_asgi(starlette_app(StepUp(header_identify, service=service))) as base_url,
        ):
            yield service_target(base_url, service, store)
