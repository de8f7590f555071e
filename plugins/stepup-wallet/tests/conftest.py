"""Fixtures for the stepup-wallet tests.

- ``clock``: a ManualClock; ``service``: StepUpService on the memory store with stepup-wallet
  and an "application" plugin whose ``app_credentials[user_id]`` are supplied credentials
  (embedded wallets, sign-in wallets) and whose audit events land in ``events``.
- ``flows``: helpers that link wallets and step up through the service, the way clients do.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import stepup_wallet.plugin
from stepup_wallet.client import LocalKeySigner

from stepup_core.clock import ManualClock
from stepup_core.models import (
    ChallengeRequest,
    ChallengeStart,
    Credential,
    CredentialFormat,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    IssuedToken,
    Principal,
    VerifyRequest,
)
from stepup_core.plugins import StepUpPluginManager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory, plugin_manager
from stepup_core.testing.vectors import load_vectors

DOMAIN = "app.example.com"
URI = "https://app.example.com/account"


@pytest.fixture
def clock(stepup_clock: ManualClock) -> ManualClock:
    return stepup_clock


@pytest.fixture
def app() -> ThrowawayPlugin:
    """Stands in for the application: supplies credentials it knows (``app_credentials``) and
    records audit events."""
    return ThrowawayPlugin()


@pytest.fixture
def pm(app: ThrowawayPlugin) -> Iterator[StepUpPluginManager]:
    manager = plugin_manager([("wallet", stepup_wallet.plugin), ("test-app", app)])
    yield manager
    manager.unregister(name="test-app")
    manager.unregister(name="wallet")


@pytest.fixture
def wallet_config() -> dict[str, Any]:
    """``[plugins.wallet]`` for the service."""
    return {"domain": DOMAIN, "uri": URI}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def service(
    stepup_service_factory: ServiceFactory,
    pm: StepUpPluginManager,
    wallet_config: dict[str, Any],
    config_overrides: dict[str, Any],
) -> StepUpService:
    config = {"secret_key": secrets.token_hex(32), "plugins": {"wallet": wallet_config}, **config_overrides}
    return await stepup_service_factory(config, pm=pm)


@attrs.define
class Flows:
    """Drive the service the way a client does."""

    service: StepUpService
    clock: ManualClock
    app: ThrowawayPlugin

    async def link(
        self, principal: Principal, signer: LocalKeySigner, *, chain_id: int | None = None, token: str | None = None
    ) -> CredentialView:
        params: dict[str, Any] = {"address": signer.address}
        if chain_id is not None:
            params["chainId"] = chain_id
        start = await self.service.begin_enrollment(principal, EnrollmentRequest(method="wallet", params=params), token)
        signature = await signer.sign_message(start.data["message"])
        return await self.service.complete_enrollment(
            principal, start.enrollment_id, EnrollmentCompletion(response={"signature": signature}), token
        )

    async def begin(
        self, principal: Principal, scopes: tuple[str, ...] = ("wallet:export",), wallet_id: str | None = None
    ) -> ChallengeStart:
        return await self.service.begin(
            principal, ChallengeRequest(method="wallet", credential_id=wallet_id, requested_scopes=scopes)
        )

    async def submit(self, principal: Principal, challenge: ChallengeStart, response: dict[str, Any]) -> IssuedToken:
        return await self.service.verify(
            principal, VerifyRequest(method="wallet", challenge_id=challenge.challenge_id, response=response)
        )

    async def step_up(
        self,
        principal: Principal,
        signer: LocalKeySigner,
        scopes: tuple[str, ...] = ("wallet:export",),
        wallet_id: str | None = None,
    ) -> IssuedToken:
        challenge = await self.begin(principal, scopes, wallet_id)
        message = challenge.data["message"]
        return await self.submit(
            principal, challenge, {"message": message, "signature": await signer.sign_message(message)}
        )

    def supply(self, principal: Principal, address: str, *, id: str, **fields: Any) -> Credential:
        """Make the application supply a wallet credential (external unless ``data`` says otherwise)."""
        credential = Credential(
            id=id,
            user_id=principal.user_id,
            method="wallet",
            format=CredentialFormat.BLOCKCHAIN,
            factor=Factor.REAUTH,
            created_at=self.clock.now(),
            identifier=address,
            **fields,
        )
        self.app.app_credentials.setdefault(principal.user_id, []).append(credential)
        return credential


@pytest.fixture
def flows(service: StepUpService, clock: ManualClock, app: ThrowawayPlugin) -> Flows:
    return Flows(service, clock, app)


@pytest.fixture
def signer() -> LocalKeySigner:
    return LocalKeySigner.generate()


@pytest.fixture
def other_signer() -> LocalKeySigner:
    return LocalKeySigner.generate()


@pytest.fixture
def vectors() -> Any:
    """``vectors("siwe/parsing_positive.json")``: a parsed conformance vector file."""
    return load_vectors


@pytest.fixture
def reference_siwe() -> Any:
    """The EIP-4361 reference implementation (siwe-py), a test-only dependency."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # abnf 2.8 warns about siwe's grammar redefining core rules
        import siwe

    return siwe
