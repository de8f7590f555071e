"""Fixtures: a real redis-server on a free loopback port, and a fresh key prefix per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stepup_redis.testing import RedisServer


def require_redis_server() -> None:
    """Skip (on a developer machine) or fail (in CI) when redis-server is not installed."""
    if RedisServer.find_binary() is None:
        message = "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run."""
    require_redis_server()
    server = RedisServer(directory=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers of the test's own (``make_redis_server("--appendonly", "yes")``);
    the test may stop and start them again. All are stopped after the test."""
    require_redis_server()
    servers: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(directory=tmp_path / f"redis-{len(servers)}", extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def own_redis_server(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server of the test's own, which the test may stop and start again."""
    return make_redis_server()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{secrets.token_hex(6)}:"


@pytest.fixture
def redis_url(redis_server: RedisServer, key_prefix: str) -> str:
    """The shared server's URL with a key prefix no other test uses."""
    return f"{redis_server.url}?prefix={key_prefix}"


# The protected-route conformance table, printed at the end of a run that includes the suite.
from stepup_core.testing.protected import (  # noqa: E402
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]
