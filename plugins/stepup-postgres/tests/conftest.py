"""Fixtures: one throwaway PostgreSQL cluster per test session, a fresh schema per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from stepup_postgres.testing import PostgresCluster, find_binaries


def require_postgres() -> None:
    """Skip (on a developer machine) or fail (in CI) when PostgreSQL is not installed."""
    if find_binaries() is None:
        message = "PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One cluster for the whole run, removed afterwards."""
    require_postgres()
    cluster = PostgresCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def make_cluster() -> Iterator[Callable[[], PostgresCluster]]:
    """Clusters of the test's own, which it may stop and start again; all removed after."""
    require_postgres()
    clusters: list[PostgresCluster] = []

    def make() -> PostgresCluster:
        cluster = PostgresCluster.create()
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.destroy()


@pytest.fixture
def schema_name() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
async def postgres_url(postgres: PostgresCluster, schema_name: str) -> AsyncIterator[str]:
    """The shared cluster's URL with a schema no other test uses (dropped afterwards)."""
    yield postgres.url("postgres", schema=schema_name)
    import asyncpg

    conn = await asyncpg.connect(postgres.url("postgres"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
    finally:
        await conn.close()


# The protected-route conformance table, printed at the end of a run that includes the suite.
from stepup_core.testing.protected import (  # noqa: E402
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]
