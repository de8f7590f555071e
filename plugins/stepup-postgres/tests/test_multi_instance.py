"""Two stepup server processes on loopback sharing one real PostgreSQL database: the shipped
multi-instance suite (:mod:`stepup_core.testing.multi_instance`) on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from stepup_postgres.testing import PostgresCluster

from stepup_core.testing.multi_instance import MultiInstanceSuite, StoreServer


@attrs.frozen
class PostgresStoreServer:
    """A PostgreSQL cluster as the suite's :class:`StoreServer`: a namespace is a schema."""

    cluster: PostgresCluster

    def store_url(self, namespace: str) -> str:
        return self.cluster.url("postgres", schema=namespace)

    def stop(self) -> None:
        self.cluster.stop()

    def start(self) -> None:
        self.cluster.start()


class TestPostgresMultiInstance(MultiInstanceSuite):
    store_plugin = "postgres"

    @pytest.fixture(scope="class")
    @classmethod
    def store_server(cls, postgres: PostgresCluster) -> StoreServer:
        return PostgresStoreServer(postgres)

    @pytest.fixture
    def own_store_server(self, make_cluster: Callable[[], PostgresCluster]) -> StoreServer:
        return PostgresStoreServer(make_cluster())
