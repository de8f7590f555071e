"""Fixtures: a StepUpService with the recovery plugin and a companion MFA method."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import stepup_recovery.plugin
from stepup_recovery.client import RecoveryClientMethod, RecoveryCodeSheet

from stepup_core.client import ScriptedPrompter
from stepup_core.client.method import ClientContext
from stepup_core.clock import ManualClock
from stepup_core.models import (
    Credential,
    CredentialFormat,
    EnrollmentRequest,
    EnrollmentStart,
    Factor,
    IssuedToken,
    Principal,
    VerifyRequest,
)
from stepup_core.plugins import StepUpPluginManager
from stepup_core.service import StepUpService
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory as KitServiceFactory
from stepup_core.testing.pytest_plugin import plugin_manager

SECRET_KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMi1ieXRlcyE"
COMPANION_CODE = "companion-ok"


@attrs.define
class YieldingStore:
    """A memory store that hands control to the event loop around every operation, as a networked
    store does, so concurrent requests really interleave. Each operation stays atomic."""

    inner: MemoryStore

    async def _pause(self) -> None:
        await asyncio.sleep(0)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._pause()
            result = await target(*args, **kwargs)
            await self._pause()
            return result

        return call


@pytest.fixture
def clock(stepup_clock: ManualClock) -> ManualClock:
    return stepup_clock


@pytest.fixture
def plugins() -> ThrowawayPlugin:
    """Another MFA method, ``companion`` (standing in for a passkey or an authenticator app), so
    recovery codes have something to be the fallback of; it also records audit events."""
    companion = PinVerifier(
        name="companion", factor=Factor.MFA, formats=(CredentialFormat.PASSKEY,), requires_challenge=False,
        sign_in=False,
    )
    return ThrowawayPlugin([companion])


@pytest.fixture
def pm(plugins: ThrowawayPlugin) -> StepUpPluginManager:
    return plugin_manager([("recovery", stepup_recovery.plugin), ("test-plugins", plugins)])


@pytest.fixture
def memory(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def store(memory: MemoryStore) -> YieldingStore:
    return YieldingStore(memory)


ServiceFactory = Callable[..., Awaitable[StepUpService]]


@pytest.fixture
def make_service(stepup_service_factory: KitServiceFactory, pm: StepUpPluginManager, store: Any) -> ServiceFactory:
    async def factory(*, store_: Any = None, **overrides: Any) -> StepUpService:
        config = {"secret_key": SECRET_KEY, **overrides}
        return await stepup_service_factory(config, pm=pm, store=store_ or store)

    return factory


@pytest.fixture
async def service(make_service: ServiceFactory) -> StepUpService:
    return await make_service()


@attrs.define
class Flows:
    service: StepUpService
    method: RecoveryClientMethod = attrs.field(factory=RecoveryClientMethod)

    async def add_companion(self, principal: Principal) -> Credential:
        credential = Credential(
            id=f"cred_companion_{principal.user_id}",
            user_id=principal.user_id,
            method="companion",
            format=CredentialFormat.PASSKEY,
            factor=Factor.MFA,
            created_at=self.service.clock.now(),
            alias="Security key",
            data=self.service.verifiers["companion"].credential_data(self.service.keys, COMPANION_CODE),
        )
        await self.service.credentials.save(credential)
        return credential

    async def token(self, principal: Principal, scope: str) -> str:
        issued = await self.service.verify(
            principal,
            VerifyRequest(method="companion", response={"code": COMPANION_CODE}, requested_scopes=(scope,)),
        )
        return issued.elevated_access_token

    async def generate(self, principal: Principal, token: str | None = None) -> EnrollmentStart:
        return await self.service.begin_enrollment(principal, EnrollmentRequest(method="recovery"), token)

    async def regenerate(self, principal: Principal) -> EnrollmentStart:
        return await self.generate(principal, await self.token(principal, "credential:link"))

    async def use(self, principal: Principal, code: Any, scopes: tuple[str, ...] = ("wallet:export",)) -> IssuedToken:
        return await self.service.verify(
            principal, VerifyRequest(method="recovery", response={"code": code}, requested_scopes=scopes)
        )

    async def enrol_with_sheet(self, principal: Principal, sheet: RecoveryCodeSheet, token: str | None = None) -> None:
        start = await self.generate(principal, token)
        wire = {"enrollmentId": start.enrollment_id, "method": start.method, "data": start.data}
        await self.method.answer_enrollment(wire, ClientContext(prompter=ScriptedPrompter(), actor=sheet))


@pytest.fixture
def flows(service: StepUpService) -> Flows:
    return Flows(service)


@pytest.fixture
def flows_for() -> Callable[[StepUpService], Flows]:
    return Flows


@pytest.fixture
def prompter() -> ScriptedPrompter:
    return ScriptedPrompter()
