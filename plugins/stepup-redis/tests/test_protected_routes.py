"""The protected-route conformance suite with the grants in Redis: the aiohttp guard reading the
store, and a ``RemoteGuard`` asking the stepup server beside it (``POST /stepup/introspect``,
which consumes a single-use grant with the store's atomic ``take``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import stepup_redis.plugin
from stepup_redis.store import RedisStore

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


class TestAiohttpGuardOnRedis(ProtectedRouteSuite):
    adapter = "aiohttp (redis)"

    @pytest.fixture
    async def target(self, tmp_path: Path, redis_url: str) -> AsyncIterator[ProtectedTarget]:
        config = {"store": redis_url}
        async with conformance_service(tmp_path, config=config, plugins=[stepup_redis.plugin]) as (service, store):
            assert isinstance(store.inner, RedisStore)
            async with serve_app(aiohttp_target_app(build_app(service, header_identify))) as base_url:
                yield service_target(base_url, service, store)


class TestRemoteGuardOnRedis(ProtectedRouteSuite):
    adapter = "remote (redis)"

    @pytest.fixture
    async def target(self, tmp_path: Path, redis_url: str) -> AsyncIterator[ProtectedTarget]:
        config = {"store": redis_url, "introspection": {"clients": {"app": credential_hash(CREDENTIAL)}}}
        async with conformance_service(tmp_path, config=config, plugins=[stepup_redis.plugin]) as (service, store):
            assert isinstance(store.inner, RedisStore)
            async with serve_app(build_app(service, header_identify)) as sidecar_url:
                gate = RemoteGuard(sidecar_url + "/stepup", CREDENTIAL)
                app = aiohttp_target_app(gate=gate, identify=header_identify)
                try:
                    async with serve_app(app) as base_url:
                        yield service_target(base_url, service, store)
                finally:
                    await gate.close()
