"""What is particular to FastAPI and Starlette: the header in FastAPI's OpenAPI document, the
protocol mounted under the prefix (identify given Starlette's request), the lifespan that opens
and closes a configured service, a RemoteGuard instead of a service, and failing closed when
stepup is not installed."""

# No "from __future__ import annotations": FastAPI reads these annotations at run time,
# and the dependencies in them name local variables.
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import pytest
from fastapi import Depends, FastAPI
from starlette.requests import Request
from stepup_fastapi import STEP_UP_RESPONSES, Elevation, RequireScope, StepUp

from stepup_core.config import config_from_mapping
from stepup_core.introspection import credential_hash
from stepup_core.models import Principal
from stepup_core.remote import RemoteGuard
from stepup_core.server import build_app, build_document, document_for, serve_app
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

ALICE = {"Authorization": "Bearer alice:s1"}
CREDENTIAL = "sis_fastapi-test-credential-00000000000000000000"


def guarded_app(stepup: StepUp) -> FastAPI:
    app = FastAPI()
    stepup.install(app)

    @app.post("/wallet/export", responses=STEP_UP_RESPONSES)
    async def export(elevation: Annotated[Elevation, Depends(RequireScope("wallet:export"))]) -> dict[str, Any]:
        return handler_body(elevation.principal, elevation.grant, "wallet:export")

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"open": True}

    return app


async def test_fastapi_openapi_declares_the_elevated_token_header_on_guarded_routes(tmp_path: Path) -> None:
    async with conformance_service(tmp_path) as (service, _):
        document = guarded_app(StepUp(header_identify, service=service)).openapi()
    scheme = document["components"]["securitySchemes"]["elevatedToken"]
    assert scheme == {
        "type": "apiKey", "in": "header", "name": "X-Elevated-Access-Token",
        "description": "An elevated access token (`sut_...`) from stepup's POST /verify.",
    }
    guarded = document["paths"]["/wallet/export"]["post"]
    assert guarded["security"] == [{"elevatedToken": []}]
    assert {"401", "503"} <= set(guarded["responses"])
    assert "security" not in document["paths"]["/open"]["get"]
    # The same scheme name and header as stepup's own document.
    own = build_document("/stepup")["components"]["securitySchemes"]["elevatedToken"]
    assert (own["in"], own["name"]) == (scheme["in"], scheme["name"])


async def test_the_protocol_is_mounted_at_the_prefix_and_identify_gets_starlettes_request(tmp_path: Path) -> None:
    seen: list[type] = []

    async def identify(request: Any) -> Principal | None:
        seen.append(type(request))
        return await header_identify(request)

    async with conformance_service(tmp_path) as (service, _):
        app = guarded_app(StepUp(identify, service=service))
        async with serve_asgi(app) as base_url, aiohttp.ClientSession() as http:
            async with http.get(base_url + "/stepup/openapi.json") as resp:
                assert resp.status == 200
                assert await resp.json() == document_for(service, "/stepup")
            async with http.post(base_url + "/stepup/check", json={"scope": "wallet:export"}, headers=ALICE) as resp:
                assert resp.status == 200
                assert (await resp.json())["isRequired"] is True
            async with http.post(base_url + "/wallet/export", headers=ALICE) as resp:
                assert resp.status == 401
            async with http.get(base_url + "/stepup/nothing") as resp:
                assert resp.status == 404
                assert (await resp.json())["code"] == "not_found"
            async with http.get(base_url + "/open") as resp:
                assert await resp.json() == {"open": True}
    assert seen == [Request, Request]


async def test_lifespan_opens_a_configured_service_and_closes_it(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'stepup.sqlite3'}"
    config = config_from_mapping({"store": store, "secret_key": secrets.token_hex(32)})
    stepup = StepUp(header_identify, config=config)
    app = guarded_app(stepup)
    app.router.lifespan_context = stepup.lifespan
    async with serve_asgi(app, lifespan="on") as base_url, aiohttp.ClientSession() as http:
        assert stepup.service is not None
        async with http.get(base_url + "/stepup/methods") as resp:
            assert resp.status == 200
        async with http.post(base_url + "/wallet/export", headers=ALICE) as refused:
            assert refused.status == 401
            assert refused.headers["Content-Type"] == "application/problem+json; charset=utf-8"
            assert (await refused.json())["code"] == "insufficient_user_authentication"
    assert stepup.service is None


async def test_without_install_a_guarded_route_fails_closed() -> None:
    app = FastAPI()
    ran: list[bool] = []

    @app.post("/wallet/export")
    async def export(elevation: Annotated[Elevation, Depends(RequireScope("wallet:export"))]) -> dict[str, bool]:
        ran.append(True)
        return {"ran": True}

    async with (
        serve_asgi(app) as base_url,
        aiohttp.ClientSession() as http,
        http.post(base_url + "/wallet/export", headers=ALICE) as resp,
    ):
        assert resp.status == 500
    assert ran == []


def test_a_malformed_scope_fails_when_the_dependency_is_made() -> None:
    from stepup_core.errors import InvalidScope

    with pytest.raises(InvalidScope):
        RequireScope("Wallet Export")


class TestFastAPIWithRemoteGuard(ProtectedRouteSuite):
    """A FastAPI application that does not share the store asks a stepup server beside it."""

    adapter = "fastapi + remote"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        config = {"introspection": {"clients": {"api": credential_hash(CREDENTIAL)}}}
        async with (
            conformance_service(tmp_path, config=config) as (service, store),
            serve_app(build_app(service, header_identify)) as sidecar,
        ):
            gate = RemoteGuard(sidecar + "/stepup", CREDENTIAL)
            app = FastAPI()
            StepUp(header_identify, gate=gate).install(app)
            for path, scope in PROTECTED_ROUTES.items():

                def add(path: str = path, scope: str = scope) -> None:
                    @app.post(path)
                    async def handler(elevation: Annotated[Elevation, Depends(RequireScope(scope))]) -> dict[str, Any]:
                        return handler_body(elevation.principal, elevation.grant, scope)

                add()
            try:
                async with serve_asgi(app) as base_url:
                    yield service_target(base_url, service, store)
            finally:
                await gate.close()
