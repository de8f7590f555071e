"""Fixtures: a StepUpService with the recovery plugin and a companion MFA method."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import stepup_recovery.plugin
from stepup_recovery.client import RecoveryClientMethod, RecoveryCodeSheet

from stepup_core.client import ScriptedPrompter
from stepup_core.client.method import ClientContext
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
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
from stepup_core.plugins import StepUpPluginManager, get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin

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
def clock() -> ManualClock:
    return ManualClock()


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
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_recovery.plugin, name="recovery")
    pm.register(plugins, name="test-plugins")
    return pm


@pytest.fixture
def memory(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def store(memory: MemoryStore) -> YieldingStore:
    return YieldingStore(memory)


ServiceFactory = Callable[..., Awaitable[StepUpService]]


@pytest.fixture
async def make_service(pm: StepUpPluginManager, clock: ManualClock, store: Any) -> AsyncIterator[ServiceFactory]:
    made: list[StepUpService] = []

    async def factory(*, store_: Any = None, **overrides: Any) -> StepUpService:
        data: dict[str, Any] = {"store": "memory:", "secret_key": SECRET_KEY}
        data.update(overrides)
        svc = await StepUpService.create(config_from_mapping(data), pm=pm, clock=clock, store=store_ or store)
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        await svc.close()


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
