"""Hook implementations of stepup-passkey. Imports here stay cheap: the verifier and the client
method load py_webauthn and fido2 only when a ceremony runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepup_core import hookimpl
from stepup_core.config import StepUpConfig
from stepup_core.errors import ConfigError


def make_verifier(config: StepUpConfig) -> Any:
    """The ``passkey`` verifier configured from ``[plugins.passkey]`` (errors name the key)."""
    from .config import PasskeySettings
    from .verifier import METHOD, PasskeyVerifier

    raw = config.plugins.get(METHOD, {})
    if isinstance(raw.get("origins"), str):
        raise ConfigError(
            "invalid configuration: plugins.passkey.origins must be a list of origins, "
            f"for example origins = [{raw['origins']!r}]"
        )
    return PasskeyVerifier(settings=config.plugin_section(METHOD, PasskeySettings))


@hookimpl
def stepup_register_verifiers(register: Callable[[Any], None], config: StepUpConfig) -> None:
    register(make_verifier(config))


@hookimpl
def stepup_register_client_methods(register: Callable[[Any], None]) -> None:
    from .client import PasskeyClientMethod

    register(PasskeyClientMethod())
