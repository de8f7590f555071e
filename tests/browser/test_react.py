"""useStepUpAuthentication() rendered by real React in Chromium: the reference hook's return
shape, and its state transitions as a component sees them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .conftest import ROOT, missing
from .harness import SiteRunner, session_token

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFERENCE_SHAPE = sorted([
    "isStepUpRequired", "checkStepUpAuth", "promptStepUpAuth", "promptMfa", "promptReauthenticate",
    "sendOtp", "verifyOtp", "verifyWallet", "verifySocial", "verifyPasskeyMfa", "verifyTotpMfa",
    "verifyRecoveryCode", "state", "resetState",
])


def bundle(tmp: Path) -> bytes:
    """React from npm and the app, bundled by esbuild (only for this test: the shipped files need
    no build step)."""
    esbuild = ROOT / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists() or not (ROOT / "node_modules" / "react").exists():
        missing("the npm packages are not installed: run `npm ci` in the repository")
    out = tmp / "react-app.js"
    subprocess.run(
        [str(esbuild), str(ROOT / "tests/browser/react/app.js"), "--bundle", "--format=esm",
         "--define:process.env.NODE_ENV=\"production\"", f"--outfile={out}", "--log-level=warning"],
        check=True, cwd=ROOT, env={**os.environ}, timeout=120,
    )
    return out.read_bytes()


@pytest_asyncio.fixture(loop_scope="session")
async def react_site(tmp_path: Path) -> Any:
    async with SiteRunner(files={"/react-app.js": bundle(tmp_path)}) as running:
        yield running


async def test_the_hook_has_the_reference_shape_and_state_transitions(react_site: Any, page: Any) -> None:
    await page.goto(react_site.base_url + "/")
    await page.evaluate(
        "async (token) => { await import('/react-app.js'); window.mountApp(token); }", session_token("alice")
    )
    await page.wait_for_function("() => window.auth !== undefined")
    shape = await page.evaluate("() => Object.keys(window.auth).sort()")
    assert shape == REFERENCE_SHAPE

    await page.evaluate("() => { window.renders.length = 0; }")
    # An MFA verifier records the failure and raises it.
    raised = await page.evaluate(
        """async () => {
            try { await window.auth.verifyTotpMfa({ code: "123456", requestedScopes: ["user:update"] }); }
            catch (e) { return e.code; }
        }"""
    )
    assert raised == "no_eligible_credential"
    await page.wait_for_selector("#error:text('no_eligible_credential')")
    renders = await page.evaluate("() => window.renders")
    assert {"isLoading": True, "error": None} in renders
    assert renders[-1] == {"isLoading": False, "error": "no_eligible_credential"}
    assert renders.index({"isLoading": True, "error": None}) < len(renders) - 1

    # A re-authentication verifier records the failure and resolves undefined.
    await page.click("#reset")
    await page.wait_for_function("() => document.querySelector('#error').textContent === ''")
    soft = await page.evaluate(
        "async () => (await window.auth.verifyWallet({ requestedScopes: ['user:update'] })) === undefined"
    )
    assert soft is True
    await page.wait_for_selector("#error:text('no_eligible_credential')")
    await page.click("#reset")
    await page.wait_for_function("() => document.querySelector('#error').textContent === ''")
    assert await page.text_content("#loading") == "false"
    renders = await page.evaluate("() => window.renders")
    assert renders[-1] == {"isLoading": False, "error": None}

    # The check: loading while it runs, no error after.
    await page.evaluate("() => { window.renders.length = 0; }")
    check = await page.evaluate("() => window.auth.checkStepUpAuth({ scope: 'wallet:export' })")
    assert check["isRequired"] is True
    await page.wait_for_function("() => window.renders.at(-1).isLoading === false")
    renders = await page.evaluate("() => window.renders")
    assert renders[0] == {"isLoading": True, "error": None} and renders[-1] == {"isLoading": False, "error": None}
    assert page.errors == []
