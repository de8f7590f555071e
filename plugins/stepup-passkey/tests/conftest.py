"""Fixtures for the passkey tests.

- ``config_mapping``: the ``stepup.toml`` mapping (memory store, ``[plugins.passkey]`` for the
  relying party ``stepup.test`` on ``https://app.stepup.test``); override to change it.
- ``service``: a :class:`StepUpService` with this plugin registered and a manual clock.
- ``event_log``: every audit event the service emitted, in order (registered as ``event-log``).
- ``enrol`` / ``step_up``: run a whole registration or step-up through the service with an
  authenticator (``SoftwareAuthenticator``), returning the credential view or the token.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import stepup_passkey.plugin
from stepup_passkey.testing import SoftwareAuthenticator

from stepup_core.clock import ManualClock
from stepup_core.models import (
    ChallengeRequest,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    IssuedToken,
    Principal,
    VerifyRequest,
)
from stepup_core.plugins import StepUpPluginManager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory, plugin_manager

RP_ID = "stepup.test"
ORIGIN = "https://app.stepup.test"
ALICE = Principal("alice", "s-alice")
BOB = Principal("bob", "s-bob")


@pytest.fixture
def clock(stepup_clock: ManualClock) -> ManualClock:
    return stepup_clock


@pytest.fixture
def passkey_settings() -> dict[str, Any]:
    return {"rp_id": RP_ID, "rp_name": "Stepup Test", "origins": [ORIGIN]}


@pytest.fixture
def config_mapping(passkey_settings: dict[str, Any]) -> dict[str, Any]:
    return {"store": "memory:", "secret_key": secrets.token_hex(32), "plugins": {"passkey": passkey_settings}}


@pytest.fixture
def event_log() -> ThrowawayPlugin:
    return ThrowawayPlugin()


@pytest.fixture
def pm(event_log: ThrowawayPlugin) -> StepUpPluginManager:
    return plugin_manager([("passkey", stepup_passkey.plugin), ("event-log", event_log)])


@pytest.fixture
async def service(
    stepup_service_factory: ServiceFactory, config_mapping: dict[str, Any], pm: StepUpPluginManager
) -> StepUpService:
    return await stepup_service_factory(config_mapping, pm=pm)


@pytest.fixture
def authenticator() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(origin=ORIGIN)


Enrol = Callable[..., Awaitable[CredentialView]]
StepUp = Callable[..., Awaitable[IssuedToken]]


@pytest.fixture
def enrol(service: StepUpService) -> Enrol:
    async def run(
        principal: Principal,
        authenticator: SoftwareAuthenticator,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        alias: str | None = None,
    ) -> CredentialView:
        start = await service.begin_enrollment(
            principal, EnrollmentRequest(method="passkey", params=params or {}), token=token
        )
        response: dict[str, Any] = {"credential": authenticator.create(start.data["publicKey"])}
        if alias is not None:
            response["alias"] = alias
        return await service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion(response))

    return run


@pytest.fixture
def step_up(service: StepUpService) -> StepUp:
    async def run(
        principal: Principal,
        authenticator: SoftwareAuthenticator,
        scope: str = "wallet:export",
        *,
        tamper: Callable[[dict[str, Any]], None] | None = None,
        options: Callable[[dict[str, Any]], None] | None = None,
    ) -> IssuedToken:
        start = await service.begin(principal, ChallengeRequest(method="passkey", requested_scopes=(scope,)))
        public_key = dict(start.data["publicKey"])
        if options is not None:
            options(public_key)
        credential = authenticator.get(public_key)
        if tamper is not None:
            tamper(credential)
        return await service.verify(
            principal,
            VerifyRequest(
                method="passkey",
                challenge_id=start.challenge_id,
                response={"credential": credential},
                requested_scopes=(scope,),
            ),
        )

    return run
