"""Two stepup server processes on loopback sharing one real redis-server: the shipped
multi-instance suite (:mod:`stepup_core.testing.multi_instance`) on Redis."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from stepup_redis.testing import RedisServer

from stepup_core.testing.multi_instance import MultiInstanceSuite, StoreServer


@attrs.frozen
class RedisStoreServer:
    """A redis-server as the suite's :class:`StoreServer`: a namespace is a key prefix."""

    server: RedisServer

    def store_url(self, namespace: str) -> str:
        return f"{self.server.url}?prefix={namespace}:"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


class TestRedisMultiInstance(MultiInstanceSuite):
    store_plugin = "redis"

    @pytest.fixture(scope="class")
    @classmethod
    def store_server(cls, redis_server: RedisServer) -> StoreServer:
        return RedisStoreServer(redis_server)

    @pytest.fixture
    def own_store_server(self, make_redis_server: Callable[..., RedisServer]) -> StoreServer:
        # An append-only file brings the data back after a restart.
        return RedisStoreServer(make_redis_server("--appendonly", "yes", "--appendfsync", "always"))
