"""``stepup demo --web`` without a browser: the command prints its address and serves the page;
the demo application's own routes are strict (cookie session, CSP, JSON only, a wallet that
signs only this site's sign-in messages). The browser tests press its buttons
(tests/browser/test_webdemo.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from stepup_core.plugins import get_plugin_manager
from stepup_core.webdemo import COOKIE, running_demo


@pytest_asyncio.fixture
async def demo() -> AsyncIterator[tuple[str, Any]]:
    async with running_demo() as started:
        yield started


async def sign_in(session: aiohttp.ClientSession, address: str, user: str) -> dict[str, Any]:
    async with session.post(address + "demo/sign-in", json={"user": user}) as answer:
        assert answer.status == 200
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        return dict(await answer.json())


async def test_the_page_and_its_scripts_are_served_under_a_strict_policy(demo: tuple[str, Any]) -> None:
    address, _ = demo
    assert re.fullmatch(r"http://localhost:\d+/", address)
    async with aiohttp.ClientSession() as session:
        async with session.get(address) as page:
            assert page.status == 200 and page.content_type == "text/html"
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
            html = await page.text()
        for script in ("/demo.js", "/stepup/static/stepup.js", "/stepup/static/prompt.js"):
            async with session.get(address.rstrip("/") + script) as answer:
                assert answer.status == 200 and answer.content_type == "text/javascript", script
    for button in ("Export wallet key", "Update profile", "Link a new device", "Show my devices"):
        assert f">{button}</button>" in html
    assert "<script>" not in html and " style=" not in html  # nothing inline


async def test_sessions_are_the_demo_cookie_and_each_sign_in_is_a_fresh_user(demo: tuple[str, Any]) -> None:
    address, running = demo
    async with aiohttp.ClientSession() as session:
        async with session.get(address + "demo/me") as answer:
            assert (await answer.json())["signedIn"] is False
        async with session.post(address + "demo/profile") as refused:
            assert refused.status == 401 and (await refused.json())["code"] == "unauthenticated"
        first = await sign_in(session, address, "alice")
        second = await sign_in(session, address, "alice")
        assert first["userId"] != second["userId"] and first["name"] == "Alice" and first["mfa"] is True
        async with session.post(address + "demo/profile") as needs:
            assert needs.status == 401
            assert 'error="insufficient_user_authentication"' in needs.headers["WWW-Authenticate"]
        async with session.post(address + "demo/sign-in", json={"user": "mallory"}) as bad:
            assert bad.status == 400
        async with session.post(address + "demo/sign-in", data="user=alice") as form:
            assert form.status == 415  # JSON only: a cross-site form cannot sign anyone in
        async with session.post(address + "demo/sign-out", json={}) as out:
            assert out.status == 200 and (await out.json())["signedIn"] is False
    assert len(running.users) == 1  # the first session is still there; the second signed out


async def test_the_mfa_user_has_an_app_and_recovery_codes_and_never_reauthenticates(demo: tuple[str, Any]) -> None:
    address, running = demo
    if not {"totp", "recovery"} <= set(running.service.verifiers):
        pytest.skip("needs stepup-totp and stepup-recovery (the tests session installs them)")
    async with aiohttp.ClientSession() as session:
        state = await sign_in(session, address, "alice")
        assert re.fullmatch(r"\d{6}", state["totp"]["code"]) and 0 < state["totp"]["secondsLeft"] <= 30
        assert len(state["recoveryCodes"]) >= 8
        async with session.post(address + "stepup/check", json={"scope": "wallet:export"}) as check:
            result = await check.json()
        assert result["route"] == "mfa"
        assert {c["method"] for c in result["credentials"]} == {"totp", "recovery"}  # not her sign-in email
        # The code shown on the page steps up (it was not spent by the enrolment).
        body = {"method": "totp", "response": {"code": state["totp"]["code"]}, "requestedScopes": ["user:update"]}
        async with session.post(address + "stepup/verify", json=body) as verified:
            token = (await verified.json())["elevatedAccessToken"]
        async with session.post(address + "demo/profile", headers={"X-Elevated-Access-Token": token}) as done:
            assert done.status == 200 and (await done.json())["updated"] is True


async def test_the_demo_wallet_signs_only_this_sites_sign_in_messages(demo: tuple[str, Any]) -> None:
    pytest.importorskip("eth_account", reason="needs stepup-wallet (the tests session installs it)")
    address, running = demo
    host = address.split("//", 1)[1].rstrip("/")
    async with aiohttp.ClientSession() as session:
        async with session.post(address + "demo/wallet/sign", json={"message": f"{host} wants you to sign in"}) as no:
            assert no.status == 403  # nobody signed in
        await sign_in(session, address, "alice")
        async with session.post(address + "demo/wallet/sign", json={"message": f"{host} wants you to sign in"}) as mfa:
            assert mfa.status == 403  # the wallet is Bob's
        await sign_in(session, address, "bob")
        for message in ("Transfer 10 ETH to 0xdead", "evil.example wants you to sign in with your Ethereum account"):
            async with session.post(address + "demo/wallet/sign", json={"message": message}) as other:
                assert other.status == 400
        async with session.post(address + "demo/wallet/sign", json={"message": f"{host} wants you to sign in"}) as ok:
            assert ok.status == 200 and (await ok.json())["signature"].startswith("0x")
    assert running.wallet is not None


async def test_the_demo_runs_with_the_core_alone() -> None:
    async with running_demo(pm=get_plugin_manager(load_entrypoints=False)) as (address, running):
        assert running.service.verifiers == {}
        async with aiohttp.ClientSession() as session:
            state = await sign_in(session, address, "bob")
            assert state["methods"] == [] and state["totp"] is None


def test_stepup_demo_web_prints_its_address_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "stepup_core.cli", "demo", "--web", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"stepup web demo on (http://localhost:\d+/)", line)
        assert found, line
        import urllib.request

        with urllib.request.urlopen(found.group(1), timeout=10) as page:
            assert page.status == 200 and b"stepup web demo" in page.read()
        process.send_signal(signal.SIGINT)
        out, _err = process.communicate(timeout=20)
        assert process.returncode == 0 and "stepup web demo stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
