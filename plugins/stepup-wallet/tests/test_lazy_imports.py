"""eth-account (and the eth-* stack beneath it) load only when a wallet is actually used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("eth_account", "eth_keys", "eth_utils", "eth_hash", "eth_abi", "eth_rlp", "siwe", "web3", "Crypto")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STEPUP_LOAD_PLUGINS", None)
    env.pop("STEPUP_DISABLE_PLUGINS", None)
    return env


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


RUN_CONSOLE_SCRIPT = """
import atexit, json, runpy, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES=" + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = [sys.argv[1], "plugins"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_stepup_plugins_command_imports_no_eth_library() -> None:
    """Run the installed ``stepup`` console script with ``plugins``, as the shell would, and
    list the modules it imported when it exits."""
    script = Path(sys.executable).with_name("stepup")
    assert script.exists(), f"the stepup console script is not installed next to {sys.executable}"
    done = subprocess.run(
        [sys.executable, "-c", RUN_CONSOLE_SCRIPT, str(script)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = {row["name"]: row for row in json.loads(done.stdout)}
    assert "stepup_register_verifiers" in listed["wallet"]["hooks"], "stepup-wallet is not installed"
    modules = json.loads(done.stderr.rsplit("MODULES=", 1)[1])
    assert "stepup_wallet.plugin" in modules
    assert _heavy(modules) == []


REGISTRATION = """
import json, sys
from stepup_core.config import config_from_mapping
from stepup_core.plugins import get_plugin_manager
from stepup_core.client.registry import client_methods

pm = get_plugin_manager()
verifiers = []
pm.hook.stepup_register_verifiers(
    register=verifiers.append,
    config=config_from_mapping({"plugins": {"wallet": {"domain": "app.example.com", "uri": "https://app.example.com"}}}),
)
methods = client_methods(pm)
print(json.dumps({
    "verifiers": [v.name for v in verifiers],
    "clientMethods": sorted(methods),
    "modules": sorted(sys.modules),
}))
"""


@pytest.mark.parametrize("use", ["register", "sign"])
def test_registration_imports_no_eth_library_until_a_wallet_is_used(use: str) -> None:
    script = REGISTRATION
    if use == "sign":
        script = script.replace(
            "methods = client_methods(pm)",
            "methods = client_methods(pm)\n"
            "import asyncio\n"
            "asyncio.run(methods['wallet'].unattended().sign_message('hello'))",
        )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "wallet" in result["verifiers"] and "wallet" in result["clientMethods"]
    if use == "register":
        assert _heavy(result["modules"]) == []
    else:  # the control: signing does load eth-account, so the check above can fail
        assert "eth_account" in result["modules"]
