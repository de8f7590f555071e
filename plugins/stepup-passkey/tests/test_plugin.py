"""Registration through the hooks, cheap imports, and configuration errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest
import stepup_passkey.plugin
from stepup_passkey.config import PasskeySettings

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError
from stepup_core.models import CredentialFormat, Factor, Interaction
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.verifier import Verifier


def test_entry_point() -> None:
    [ep] = [ep for ep in entry_points(group="stepup") if ep.name == "passkey"]
    assert ep.value == "stepup_passkey.plugin"
    assert ep.load() is stepup_passkey.plugin


def test_registering_imports_neither_webauthn_nor_fido2() -> None:
    code = """
import sys
from stepup_core.config import config_from_mapping
from stepup_core.plugins import get_plugin_manager
import stepup_passkey.plugin
pm = get_plugin_manager(load_entrypoints=False)
pm.register(stepup_passkey.plugin, name="passkey")
verifiers, methods = [], []
pm.hook.stepup_register_verifiers(register=verifiers.append, config=config_from_mapping({}))
pm.hook.stepup_register_client_methods(register=methods.append)
assert [v.name for v in verifiers] == ["passkey"] and [m.name for m in methods] == ["passkey"]
methods[0].unattended()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("webauthn", "fido2", "OpenSSL"))
print(heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


async def test_method_info() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_passkey.plugin, name="passkey")
    service = await StepUpService.create(config_from_mapping({"store": "memory:"}), pm=pm, clock=ManualClock())
    try:
        verifier = service.verifiers["passkey"]
        assert isinstance(verifier, Verifier)
        [info] = [m for m in service.methods() if m.name == "passkey"]
        assert info.factor is Factor.MFA and info.formats == (CredentialFormat.PASSKEY,)
        assert info.interaction is Interaction.OPTIONS and info.requires_challenge and not info.fallback
        assert verifier.challenge_ttl == 300.0 and verifier.package == "stepup-passkey"
    finally:
        await service.close()


def test_defaults() -> None:
    settings = PasskeySettings()
    assert settings.rp_id == "localhost"
    assert settings.effective_origins == ("https://localhost",)
    assert settings.algorithm_ids == (-7, -8, -257)
    assert settings.attestation == "none" and settings.user_verification == "required"
    assert PasskeySettings(rp_id="example.com", origins=("https://example.com", "https://app.example.com",
                                                         "android:apk-key-hash:abc")).origins
    assert PasskeySettings(origins=("http://localhost:8000",)).effective_origins == ("http://localhost:8000",)


@pytest.mark.parametrize(("section", "message"), [
    ({"origins": "https://localhost"}, "origins must be a list"),
    ({"origins": ["http://example.com"]}, "uses http"),
    ({"rp_id": "example.com", "origins": ["https://example.org"]}, "not 'example.com' nor a subdomain"),
    ({"rp_id": "example.com", "origins": ["https://notexample.com"]}, "nor a subdomain"),
    ({"origins": ["https://localhost/login"]}, "no path"),
    ({"origins": ["localhost"]}, "is not an origin"),
    ({"origins": ["android:apk-key-hash:"]}, "lacks the APK key hash"),
    ({"rp_id": "https://example.com"}, "rp_id must be a lower-case domain"),
    ({"rp_id": "Example.com"}, "rp_id must be a lower-case domain"),
    ({"rp_name": " "}, "rp_name must not be empty"),
    ({"attestation": "full"}, "attestation must be one of"),
    ({"user_verification": "discouraged"}, "user_verification must be one of"),
    ({"resident_key": "always"}, "resident_key must be one of"),
    ({"timeout_ms": 5}, "timeout_ms must be between"),
    ({"allow_algorithms": []}, "at least one algorithm"),
    ({"allow_algorithms": ["ES256", "HS256"]}, "unknown ['HS256']"),
    ({"rp": "x"}, "plugins.passkey.rp: unknown field"),
    # IP literals, which browsers refuse for passkeys (SecurityError), are refused at start.
    ({"rp_id": "127.0.0.1"}, "rp_id must be a domain name, not an IP address"),
    ({"rp_id": "10.1.2.3"}, "not an IP address"),
    ({"rp_id": "127.1"}, "not an IP address"),  # what a browser's URL parser reads as 127.0.0.1
    ({"rp_id": "0x7f000001"}, "not an IP address"),
    ({"origins": ["http://127.0.0.1:8080"]}, "has an IP address for its host; browsers refuse passkeys"),
    ({"origins": ["http://[::1]:8080"]}, "has an IP address for its host"),
    ({"rp_id": "localhost", "origins": ["https://127.0.0.1"]}, "'https://localhost' for development"),
])
async def test_configuration_errors(section: dict[str, Any], message: str) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_passkey.plugin, name="passkey")
    config = config_from_mapping({"store": "memory:", "plugins": {"passkey": section}})
    with pytest.raises(ConfigError) as refused:
        await StepUpService.create(config, pm=pm, clock=ManualClock())
    assert message in str(refused.value)


def test_localhost_and_its_subdomains_over_http_stay_allowed() -> None:
    settings = PasskeySettings(origins=("http://localhost:8080", "http://app.localhost:3000"))
    assert settings.effective_origins == ("http://localhost:8080", "http://app.localhost:3000")
    assert PasskeySettings(rp_id="a1.example.com").rp_id == "a1.example.com"
