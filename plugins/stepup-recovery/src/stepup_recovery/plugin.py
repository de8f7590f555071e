"""stepup hooks for recovery codes. Cheap to import."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepup_core import hookimpl

if TYPE_CHECKING:
    from stepup_core.client.method import ClientMethod
    from stepup_core.config import StepUpConfig
    from stepup_core.verifier import Verifier


@hookimpl
def stepup_register_verifiers(register: Callable[[Verifier], None], config: StepUpConfig) -> None:
    from .verifier import make_verifier

    register(make_verifier(config))


@hookimpl
def stepup_register_client_methods(register: Callable[[ClientMethod], None]) -> None:
    from .client import RecoveryClientMethod

    register(RecoveryClientMethod())
