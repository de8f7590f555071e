"""Registration only: cheap imports, the provider machinery loads on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepup_core import hookimpl
from stepup_core.config import StepUpConfig

from .client import SocialClientMethod
from .settings import SocialSettings, validate
from .verifier import METHOD, SocialVerifier

if TYPE_CHECKING:
    from stepup_core.client.method import ClientMethod
    from stepup_core.verifier import Verifier


def make_verifier(config: StepUpConfig) -> SocialVerifier:
    """The verifier for ``[plugins.social]``; a bad section is a ConfigError naming the key."""
    return SocialVerifier(validate(config.plugin_section(METHOD, SocialSettings)))


@hookimpl
def stepup_register_verifiers(register: Callable[[Verifier], None], config: StepUpConfig) -> None:
    register(make_verifier(config))


@hookimpl
def stepup_register_client_methods(register: Callable[[ClientMethod], None]) -> None:
    register(SocialClientMethod())
