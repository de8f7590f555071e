"""``stepup demo``: generic over the ClientMethod protocol (throwaway methods, in process) and with
whatever method plugins are installed (as a separate process)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from stepup_core.client.method import Answer, ClientContext
from stepup_core.demo import run_demo
from stepup_core.models import CredentialFormat, Factor
from stepup_core.plugins import get_plugin_manager
from stepup_core.testing.methods import KeyClientMethod, KeyVerifier, PinVerifier, ThrowawayPlugin


def _pm(*, verifiers: list[Any], client_methods: list[Any]) -> Any:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ThrowawayPlugin(verifiers, client_methods), name="throwaway")
    return pm


def _methods() -> tuple[list[Any], list[Any]]:
    verifiers = [
        KeyVerifier(name="passkey", factor=Factor.MFA, formats=(CredentialFormat.PASSKEY,)),
        KeyVerifier(name="wallet", factor=Factor.REAUTH, formats=(CredentialFormat.BLOCKCHAIN,)),
        PinVerifier(name="otp", factor=Factor.REAUTH),  # its client half is "not installed"
    ]
    return verifiers, [KeyClientMethod("passkey"), KeyClientMethod("wallet")]


FIRST_PARTY = ("passkey", "wallet", "otp", "totp", "recovery", "social")


def _rows(text: str, names: tuple[str, ...] = FIRST_PARTY) -> dict[tuple[str, str], str]:
    """(method, token behaviour) -> the row, from the printed table."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[0] in names:
            behaviour = next((p for p in parts if p in ("single-use", "time-bound")), "-")
            rows[(parts[0], behaviour)] = line
    return rows


async def test_demo_runs_every_unattended_method_and_skips_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    verifiers, halves = _methods()
    out = io.StringIO()
    with caplog.at_level(logging.WARNING):
        status = await run_demo(out, pm=_pm(verifiers=verifiers, client_methods=halves))
    # The demo knows its own address: no warning about server.public_url.
    assert "public_url" not in caplog.text
    text = out.getvalue()
    assert status == 0, text
    assert "METHOD" in text and "PROTECTED ROUTE" in text and "MS" in text
    rows = _rows(text)
    for method, who in (("passkey", "alice (mfa)"), ("wallet", "bob (reauth)")):
        single = rows[(method, "single-use")]
        assert who in single and "POST /demo/wallet/export" in single
        assert "ok: 200, reused: 401 refused" in single
        timed = rows[(method, "time-bound")]
        assert "POST /demo/profile" in timed and "ok: 200, again: 200" in timed
    assert "skipped: client half not installed (pip install ./plugins/stepup-otp)" in rows[("otp", "-")]
    assert "4 passed, 0 failed, 1 skipped" in text


@attrs.define
class WrongKeyClientMethod(KeyClientMethod):
    """Enrols its key, then answers challenges with another one."""

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        return Answer(response={"mac": "00" * 32})


async def test_demo_exits_nonzero_when_a_step_fails() -> None:
    verifiers, _ = _methods()
    out = io.StringIO()
    status = await run_demo(
        out, pm=_pm(verifiers=verifiers, client_methods=[WrongKeyClientMethod("passkey"), KeyClientMethod("wallet")])
    )
    text = out.getvalue()
    assert status == 1
    assert "FAILED: VerificationFailed" in _rows(text)[("passkey", "single-use")]
    assert "ok:" in _rows(text)[("wallet", "single-use")]
    assert "2 passed, 2 failed" in text


async def test_demo_with_only_the_core_says_what_to_install() -> None:
    out = io.StringIO()
    status = await run_demo(out, pm=get_plugin_manager(load_entrypoints=False))
    assert status == 0
    assert "Only stepup-core is installed" in out.getvalue()
    assert "pip install ./plugins/stepup-otp ./plugins/stepup-totp ./plugins/stepup-passkey" in out.getvalue()
    assert "pip install --find-links dist stepup-otp stepup-totp" in out.getvalue()


def _installed_methods() -> list[str]:
    listing = subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", "plugins"], capture_output=True, text=True, timeout=120, check=True
    )
    return sorted(r["name"] for r in json.loads(listing.stdout) if "stepup_register_verifiers" in r["hooks"])


def test_stepup_demo_with_the_installed_plugins() -> None:
    methods = _installed_methods()
    result = subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", "demo"], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "public_url" not in result.stdout + result.stderr
    if not methods:  # the core alone (STEPUP_LOAD_PLUGINS="" or no plugin installed)
        assert "Only stepup-core is installed" in result.stdout
        return
    rows = _rows(result.stdout, tuple(methods))
    assert "FAILED" not in result.stdout
    for method in methods:
        ran = [row for (name, _), row in rows.items() if name == method]
        assert ran, f"{method} is missing from the table:\n{result.stdout}"
        assert all(" ok: " in row or "skipped:" in row for row in ran)
    assert " 0 failed" in result.stdout
