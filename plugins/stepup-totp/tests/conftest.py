"""Fixtures: a StepUpService with the totp plugin, a manual clock, an authenticator app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
import stepup_totp.plugin
from stepup_totp.client import AuthenticatorApp, TotpClientMethod

from stepup_core.client import ScriptedPrompter
from stepup_core.client.method import ClientContext
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import (
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    IssuedToken,
    Principal,
    VerifyRequest,
)
from stepup_core.plugins import StepUpPluginManager
from stepup_core.service import StepUpService
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory as KitServiceFactory
from stepup_core.testing.pytest_plugin import plugin_manager

SECRET_KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMi1ieXRlcyE"  # 35 bytes, base64
#: Mid-step, so codes of the neighbouring steps are 30 s either side.
START = 1_800_000_015.0


@pytest.fixture
def stepup_clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def clock(stepup_clock: ManualClock) -> ManualClock:
    return stepup_clock


@pytest.fixture
def events() -> ThrowawayPlugin:
    """Records the service's audit events (``events.of_type("grant_issued")``)."""
    return ThrowawayPlugin()


def make_pm(events: ThrowawayPlugin | None = None) -> StepUpPluginManager:
    plugins: list[object] = [("totp", stepup_totp.plugin)]
    if events is not None:
        plugins.append(("test-events", events))
    return plugin_manager(plugins)


@pytest.fixture
def pm(events: ThrowawayPlugin) -> Iterator[StepUpPluginManager]:
    yield make_pm(events)


@pytest.fixture
def store(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def make_config(**overrides: Any) -> Any:
    data: dict[str, Any] = {"store": "memory:", "secret_key": SECRET_KEY, "app_name": "Example Wallet"}
    data.update(overrides)
    return config_from_mapping(data)


ServiceFactory = Callable[..., Awaitable[StepUpService]]


@pytest.fixture
def make_service(
    stepup_service_factory: KitServiceFactory, pm: StepUpPluginManager, store: MemoryStore
) -> ServiceFactory:
    """A service on the shared store; ``pm_``/``store_`` stand for another server instance."""

    async def factory(*, pm_: StepUpPluginManager | None = None, store_: Any = None, **overrides: Any) -> StepUpService:
        return await stepup_service_factory(make_config(**overrides), pm=pm_ or pm, store=store_ or store)

    return factory


@pytest.fixture
async def service(make_service: ServiceFactory) -> StepUpService:
    return await make_service()


@pytest.fixture
def app(clock: ManualClock) -> AuthenticatorApp:
    return AuthenticatorApp(clock=clock)


@attrs.define
class Flows:
    """Drive the service the way the client would, with the authenticator app as the person."""

    service: StepUpService
    app: AuthenticatorApp
    method: TotpClientMethod = attrs.field(factory=TotpClientMethod)

    async def enrol(
        self, principal: Principal, token: str | None = None, alias: str | None = None, **params: Any
    ) -> CredentialView:
        start = await self.service.begin_enrollment(
            principal, EnrollmentRequest(method="totp", params=params, alias=alias), token
        )
        wire = {"enrollmentId": start.enrollment_id, "method": start.method, "data": start.data}
        response = await self.method.answer_enrollment(wire, ClientContext(prompter=ScriptedPrompter(), actor=self.app))
        view = await self.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response=dict(response)), token
        )
        self.app.link(view.id, start.enrollment_id)
        return view

    async def verify(
        self,
        principal: Principal,
        code: str | None = None,
        credential_id: str | None = None,
        scopes: tuple[str, ...] = ("wallet:export",),
    ) -> IssuedToken:
        if code is None:
            code = self.app.code({"credentialId": credential_id} if credential_id else None)
        return await self.service.verify(
            principal,
            VerifyRequest(method="totp", response={"code": code}, credential_id=credential_id, requested_scopes=scopes),
        )

    async def token_for(self, principal: Principal, scope: str, credential_id: str | None = None) -> str:
        """An elevated token for ``scope`` from the app's code one step ahead (a fresh step)."""
        entry = self.app.entry_for({"credentialId": credential_id} if credential_id else None)
        code = entry.key.code_at(self.app.clock.now() + entry.key.period)
        issued = await self.verify(principal, code=code, credential_id=credential_id, scopes=(scope,))
        return issued.elevated_access_token


@pytest.fixture
def flows(service: StepUpService, app: AuthenticatorApp) -> Flows:
    return Flows(service, app)


@pytest.fixture
def flows_for(app: AuthenticatorApp) -> Callable[[StepUpService], Flows]:
    """Flows on another service, with the same authenticator app."""
    return lambda service: Flows(service, app)


@pytest.fixture
def new_pm() -> Callable[[], StepUpPluginManager]:
    """A further plugin manager with the totp plugin (a second server instance)."""
    return make_pm


@pytest.fixture
def prompter() -> ScriptedPrompter:
    return ScriptedPrompter()
