"""The plugin registers cheaply and is found through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

from stepup_otp.client import OtpClientMethod
from stepup_otp.verifier import OtpVerifier

from stepup_core.client.method import ClientMethod
from stepup_core.config import config_from_mapping
from stepup_core.plugins import get_plugin_manager
from stepup_core.verifier import Verifier

HEAVY = ["aiosmtplib", "aiohttp", "aiosmtpd", "pyotp", "eth_account", "webauthn", "fido2", "redis", "segno"]

PROBE = """
import json, sys
from stepup_core.config import config_from_mapping
from stepup_core.models import CodeDelivery
from stepup_core.plugins import get_plugin_manager
import stepup_otp.plugin as plugin

pm = get_plugin_manager(load_entrypoints=False)
pm.register(plugin, name="otp")
config = config_from_mapping({"plugins": {"otp": {
    "smtp": {"host": "127.0.0.1", "sender": "no-reply@example.com"},
    "sms_gateway": {"url": "https://sms.example.com/send"}}}})
verifiers, methods = [], []
pm.hook.stepup_register_verifiers(register=verifiers.append, config=config)
pm.hook.stepup_register_client_methods(register=methods.append)
delivery = CodeDelivery("email", "a@example.com", "123456", "stepUp", 0.0, "u")
senders = [pm.hook.stepup_deliver_code(delivery=delivery, config=config).name]
print(json.dumps({"loaded": sorted(m for m in sys.argv[1:] if m in sys.modules),
                  "verifiers": [v.name for v in verifiers], "methods": [m.name for m in methods],
                  "senders": senders}))
"""


def test_registration_and_choosing_a_sender_import_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *HEAVY], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["verifiers"] == ["otp"]
    assert result["methods"] == ["otp"]
    assert result["senders"][0] == "smtp"
    assert result["loaded"] == [], f"imported at registration: {result['loaded']}"


def test_entry_point_is_registered_under_stepup() -> None:
    [ep] = [ep for ep in entry_points(group="stepup") if ep.name == "otp"]
    assert ep.value == "stepup_otp.plugin"
    pm = get_plugin_manager(load_entrypoints=True)
    assert pm.get_plugin("otp") is not None
    assert not [f for f in pm.load_failures if f.name == "otp"]


def test_both_halves_satisfy_the_protocols() -> None:
    verifier = OtpVerifier()
    assert isinstance(verifier, Verifier)
    assert isinstance(OtpClientMethod(), ClientMethod)
    assert verifier.package == OtpClientMethod.package == "stepup-otp"


def test_a_misconfigured_section_fails_at_registration() -> None:
    import pytest
    from stepup_otp import plugin

    from stepup_core.errors import ConfigError

    config = config_from_mapping({"plugins": {"otp": {"code_tll": 60}}})
    with pytest.raises(ConfigError, match=r"plugins\.otp\.code_tll: unknown field"):
        plugin.stepup_register_verifiers(register=lambda v: None, config=config)
