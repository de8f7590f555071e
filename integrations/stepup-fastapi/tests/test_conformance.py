"""stepup's protected-route conformance suite against the FastAPI dependency and the Starlette
decorator, each application served by uvicorn on loopback."""

# No "from __future__ import annotations": FastAPI reads these annotations at run time,
# and the dependencies in them name local variables.
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from stepup_fastapi import Elevation, RequireScope, StepUp, requires_scope

from stepup_core.testing.protected import (
    PROTECTED_ROUTES,
    ProtectedRouteSuite,
    ProtectedTarget,
    conformance_service,
    handler_body,
    header_identify,
    service_target,
)
from stepup_core.testing.servers import serve_asgi


def fastapi_app(stepup: StepUp) -> FastAPI:
    app = FastAPI()
    stepup.install(app)
    for path, scope in PROTECTED_ROUTES.items():

        def add(path: str = path, scope: str = scope) -> None:
            @app.post(path)
            async def handler(elevation: Annotated[Elevation, Depends(RequireScope(scope))]) -> dict[str, object]:
                return handler_body(elevation.principal, elevation.grant, scope)

        add()
    return app


def starlette_app(stepup: StepUp) -> Starlette:
    routes = []
    for path, scope in PROTECTED_ROUTES.items():

        @requires_scope(scope)
        async def endpoint(request: Request, scope: str = scope) -> JSONResponse:
            elevation = request.state.stepup
            return JSONResponse(handler_body(elevation.principal, elevation.grant, scope))

        routes.append(Route(path, endpoint, methods=["POST"]))
    app = Starlette(routes=routes)
    stepup.install(app)
    return app


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
