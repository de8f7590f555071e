"""Shared fixtures for the core tests.

- ``clock``: a :class:`ManualClock`.
- ``pin_verifier`` / ``methods`` / ``pm``: a throwaway PIN method (``stepup_core.testing.methods``)
  registered on a plugin manager built without entry points (override ``methods`` to register
  more verifiers).
- ``config_overrides`` / ``service``: a :class:`StepUpService` on the memory store (or on the
  ``store`` fixture when a module overrides it, e.g. with ``switchable_store``: a store whose
  backend can be made unreachable).
- ``identify``: reads ``Authorization: Bearer <user>:<session>`` (a stand-in for the
  application's session); ``http_client``: an aiohttp test client for an application, checking
  every answer against stepup's OpenAPI document; ``asgi_client``: the same for an ASGI
  application served by uvicorn; ``adapter_client``: either, by the ``adapter`` parameter, for
  the stepup routes of ``service`` (a module parametrizes ``adapter`` to run against both).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import CredentialFormat, Factor, Principal
from stepup_core.plugins import StepUpPluginManager, get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stores import SwitchableStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pin_verifier() -> PinVerifier:
    """An MFA PIN whose enrolment is confirmed (``params.pin``, then ``response.pin``); variants
    (another name, shape or begin limits) are ``attrs.evolve(pin_verifier, ...)``."""
    return PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False, confirm=True)


@pytest.fixture
def methods(pin_verifier: PinVerifier) -> ThrowawayPlugin:
    return ThrowawayPlugin([pin_verifier])


@pytest.fixture
def pm(methods: ThrowawayPlugin) -> Iterator[StepUpPluginManager]:
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(methods, name="test-methods")
    yield manager
    manager.unregister(name="test-methods")


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Merged into the service's configuration (a ``stepup.toml``-shaped mapping)."""
    return {}


@pytest.fixture
def store() -> Any:
    """The service's store; None opens the configured one (``memory:`` unless overridden)."""
    return None


@pytest.fixture
def switchable_store(clock: ManualClock) -> SwitchableStore:
    from stepup_core.store.memory import MemoryStore

    return SwitchableStore(MemoryStore(clock=clock))


@pytest.fixture
async def service(
    pm: StepUpPluginManager, clock: ManualClock, config_overrides: dict[str, Any], store: Any
) -> AsyncIterator[StepUpService]:
    config = config_from_mapping({"store": "memory:", "secret_key": secrets.token_hex(32), **config_overrides})
    svc = await StepUpService.create(config, pm=pm, clock=clock, store=store)
    yield svc
    await svc.close()


@pytest.fixture
def identify() -> Callable[[web.Request], Awaitable[Principal | None]]:
    """``Authorization: Bearer <user>:<session>`` -> Principal(user, session); else anonymous."""

    async def identify(request: web.Request) -> Principal | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        user, sep, session = value.partition(":")
        if scheme != "Bearer" or not sep or not user or not session:
            return None
        return Principal(user_id=user, session_id=session)

    return identify


@pytest.fixture
async def http_client() -> AsyncIterator[Callable[..., Awaitable[TestClient[Any, Any]]]]:
    """``await http_client(app, prefix="/stepup")``: a client on loopback whose every answer is
    checked against stepup's OpenAPI document (a mismatch fails the test)."""
    from stepup_core.server import build_document
    from stepup_core.server.testing import ResponseValidator

    clients: list[TestClient[Any, Any]] = []

    async def make(
        app: web.Application, prefix: str = "/stepup", app_name: str = "stepup", admin: bool = False
    ) -> TestClient[Any, Any]:
        validator = ResponseValidator(build_document(prefix, app_name=app_name, admin=admin), prefix=prefix)
        client: TestClient[Any, Any] = TestClient(TestServer(app), middlewares=[validator.middleware])
        await client.start_server()
        client.validator = validator  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@attrs.define
class _Listening:
    port: int


@attrs.define
class LoopbackClient:
    """aiohttp's TestClient surface (relative paths, ``server.port``, ``app``, ``validator``) for a
    server already listening on loopback."""

    session: aiohttp.ClientSession
    server: _Listening
    app: Any
    validator: Any

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.session.post(path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.session.patch(path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.session.delete(path, **kwargs)


@pytest.fixture
async def asgi_client() -> AsyncIterator[Callable[..., Awaitable[LoopbackClient]]]:
    """``await asgi_client(app, prefix="/stepup")``: ``app`` (ASGI) served by uvicorn on loopback,
    and a client whose every answer is checked against stepup's OpenAPI document."""
    from contextlib import AsyncExitStack
    from urllib.parse import urlsplit

    from stepup_core.server import build_document
    from stepup_core.server.testing import ResponseValidator
    from stepup_core.testing.servers import serve_asgi

    async with AsyncExitStack() as stack:

        async def make(app: Any, prefix: str = "/stepup", app_name: str = "stepup") -> LoopbackClient:
            validator = ResponseValidator(build_document(prefix, app_name=app_name), prefix=prefix)
            base_url = await stack.enter_async_context(serve_asgi(app))
            session = await stack.enter_async_context(
                aiohttp.ClientSession(base_url=base_url, middlewares=[validator.middleware])
            )
            return LoopbackClient(session, _Listening(urlsplit(base_url).port or 0), app, validator)

        yield make


@pytest.fixture
def adapter() -> str:
    """Which adapter serves ``adapter_client``: ``aiohttp`` or ``asgi`` (parametrize to run both)."""
    return "aiohttp"


@pytest.fixture
async def adapter_client(
    adapter: str, service: StepUpService, identify: Any, http_client: Any, asgi_client: Any
) -> Any:
    """The stepup routes of ``service`` served by the ``adapter`` (aiohttp's ``build_app`` or the
    ASGI application under uvicorn), behind an OpenAPI-checking client."""
    if adapter == "asgi":
        from stepup_core.server.asgi import StepUpASGI

        return await asgi_client(StepUpASGI(service, identify))
    from stepup_core.server import build_app

    return await http_client(build_app(service, identify))


# The protected-route conformance table, printed at the end of a run that includes the suite.
from stepup_core.testing.protected import (  # noqa: E402
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]
