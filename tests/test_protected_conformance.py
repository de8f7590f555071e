"""The protected-route conformance suite against the guards stepup-core ships: aiohttp's
``requires_scope`` with the store at hand, and with a ``RemoteGuard`` asking a stepup server
beside the application (``POST /stepup/introspect``). Each runs on a real server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepup_core.introspection import credential_hash
from stepup_core.remote import RemoteGuard
from stepup_core.server import build_app, serve_app
from stepup_core.testing.protected import (
    ProtectedRouteSuite,
    ProtectedTarget,
    aiohttp_target_app,
    conformance_service,
    header_identify,
    service_target,
)

CREDENTIAL = "sis_conformance-test-credential-000000000000000"


class TestAiohttpGuard(ProtectedRouteSuite):
    adapter = "aiohttp"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        async with conformance_service(tmp_path) as (service, store):
            app = aiohttp_target_app(build_app(service, header_identify))
            async with serve_app(app) as base_url:
                yield service_target(base_url, service, store)


class TestRemoteGuard(ProtectedRouteSuite):
    """An application without the store: its guard asks the stepup server beside it."""

    adapter = "remote (aiohttp)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        config = {"introspection": {"clients": {"app": credential_hash(CREDENTIAL)}}}
        async with conformance_service(tmp_path, config=config) as (service, store):
            sidecar = build_app(service, header_identify)
            async with serve_app(sidecar) as sidecar_url:
                gate = RemoteGuard(sidecar_url + "/stepup", CREDENTIAL)
                app = aiohttp_target_app(gate=gate, identify=header_identify)
                try:
                    async with serve_app(app) as base_url:
                        yield service_target(base_url, service, store)
                finally:
                    await gate.close()
