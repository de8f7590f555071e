"""Hook implementations only. Keep this module cheap to import: `stepup plugins` imports it."""

from __future__ import annotations

from collections.abc import Callable

from stepup_core import hookimpl
from stepup_core.client.method import ClientMethod
from stepup_core.config import StepUpConfig
from stepup_core.verifier import Verifier


@hookimpl
def stepup_register_verifiers(register: Callable[[Verifier], None], config: StepUpConfig) -> None:
    from .verifier import PinSettings, PinVerifier

    register(PinVerifier(config.plugin_section("pin", PinSettings)))


@hookimpl
def stepup_register_client_methods(register: Callable[[ClientMethod], None]) -> None:
    from .client import PinClientMethod

    register(PinClientMethod())
