"""Real identity providers on loopback and a StepUpService wired to them.

- ``mock_issuer``: ``oidc-provider-mock`` (an OpenID provider from PyPI made for tests), served
  by werkzeug in a thread on a free port.
- ``loopback``: a strict provider of our own (``stepup_social.testing.LoopbackProvider``) in the
  test's event loop, for what the PyPI provider cannot be bent to do (foreign signing keys,
  expired tokens, PKCE enforcement, a GitHub-style OAuth 2.0 provider).
- ``make_service``: a StepUpService with only this plugin, a memory store and a clock that
  follows real time (the providers stamp tokens with real time) and can be moved forward.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import attrs
import pytest
import stepup_social.plugin
from stepup_social.testing import LoopbackProvider, sign_in_at_mock_provider

from stepup_core.models import AuditEvent, ChallengeRequest, EnrollmentRequest, Principal
from stepup_core.service import StepUpService
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory as KitServiceFactory

PUBLIC_URL = "http://127.0.0.1:8765"
CALLBACK_URL = f"{PUBLIC_URL}/stepup/callback/social"
SECRET_KEY = "kJ9o1bO0m1d3yJmYx0b2xVQe3b4l5n6p7r8s9t0u1w2"


@pytest.fixture
def callback_url() -> str:
    return CALLBACK_URL


@attrs.define
class ShiftedClock:
    """Real time plus an offset a test can move forward (tokens from the providers carry real time)."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def mock_issuer() -> Iterator[str]:
    with warnings.catch_warnings():
        # The provider imports parts of authlib that authlib deprecates, and authlib forces
        # its deprecation warnings on at import: silence them after that import.
        import authlib.deprecate

        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=0) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
async def mock_admin(mock_issuer: str) -> AsyncIterator[Callable[[str, dict[str, Any]], Awaitable[None]]]:
    """Set a user's claims at the PyPI provider (``PUT /users/<sub>``)."""
    async with aiohttp.ClientSession() as http:

        async def set_claims(subject: str, claims: dict[str, Any]) -> None:
            async with http.put(f"{mock_issuer}/users/{subject}", json=claims) as answer:
                assert answer.status == 204, await answer.text()

        yield set_claims


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def loopback(clock: ShiftedClock) -> AsyncIterator[LoopbackProvider]:
    provider = await LoopbackProvider(clock=clock.now).start()
    yield provider
    await provider.close()


@pytest.fixture
async def github(clock: ShiftedClock) -> AsyncIterator[LoopbackProvider]:
    provider = await LoopbackProvider(kind="oauth2", clock=clock.now, client_id="gh-client").start()
    yield provider
    await provider.close()


ServiceFactory = Callable[..., Awaitable[StepUpService]]


@pytest.fixture
def events() -> list[AuditEvent]:
    """Audit events of the services ``make_service`` built."""
    return []


@pytest.fixture
def make_service(
    stepup_service_factory: KitServiceFactory, clock: ShiftedClock, events: list[AuditEvent]
) -> ServiceFactory:
    async def make(providers: dict[str, dict[str, Any]], **social: Any) -> StepUpService:
        config = {
            "secret_key": SECRET_KEY,
            "server": {"public_url": PUBLIC_URL},
            "plugins": {"social": {"providers": providers, **social}},
        }
        plugins = [("social", stepup_social.plugin), ("recorder", ThrowawayPlugin(events=events))]
        return await stepup_service_factory(config, plugins=plugins, clock=clock)

    return make


async def link_account(
    service: StepUpService,
    principal: Principal,
    sign_in: Callable[[str], Awaitable[dict[str, str]]],
    *,
    provider: str,
    token: str | None = None,
) -> str:
    """Link a provider account through the real enrolment flow; the new credential's id."""
    before = {c.id for c in await service.list_credentials(principal)}
    start = await service.begin_enrollment(principal, EnrollmentRequest("social", {"provider": provider}), token)
    query = await sign_in(start.data["authorizationUrl"])
    await service.complete_callback("social", query)
    after = [c for c in await service.list_credentials(principal) if c.id not in before]
    assert len(after) == 1
    return after[0].id


@pytest.fixture
def link() -> Callable[..., Awaitable[str]]:
    return link_account


@pytest.fixture
def mock_sign_in() -> Callable[[str], Callable[[str], Awaitable[dict[str, str]]]]:
    """``mock_sign_in("alice")`` is a function that signs in at the PyPI provider as alice."""

    def as_subject(subject: str) -> Callable[[str], Awaitable[dict[str, str]]]:
        async def sign_in(url: str) -> dict[str, str]:
            return await sign_in_at_mock_provider(url, subject)

        return sign_in

    return as_subject


async def begin_social(service: StepUpService, principal: Principal, provider: str, scope: str = "user:update") -> Any:
    return await service.begin(
        principal, ChallengeRequest("social", requested_scopes=(scope,), params={"provider": provider})
    )


@pytest.fixture
def begin() -> Callable[..., Awaitable[Any]]:
    return begin_social
