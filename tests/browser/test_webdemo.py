"""``stepup demo --web`` in Chromium: every button of the demo page, end to end, through the
built-in prompt, with the demo's own authenticators (the authenticator app's code and the
recovery codes shown on the page, email codes in the page's inbox, the demo wallet in the page,
the sign-in provider on loopback) and a DevTools virtual authenticator for the new device."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stepup_core.webdemo import running_demo

from .harness import _pm
from .test_methods import virtual_authenticator
from .test_prompt import choose, screen

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def demo() -> AsyncIterator[tuple[str, Any]]:
    async with running_demo(pm=_pm()) as started:
        yield started


async def open_demo(page: Any, address: str, who: str) -> None:
    await page.goto(address)
    await page.wait_for_selector("body[data-ready]")
    await page.get_by_role("button", name=f"Sign in as {who}").click()
    await page.wait_for_selector("#signed-in:not([hidden])")


async def result(page: Any, starts: str) -> str:
    await page.wait_for_function(
        "(starts) => document.querySelector('#result').textContent.startsWith(starts)", arg=starts, timeout=15_000
    )
    return str(await page.text_content("#result"))


async def test_the_demo_without_mfa(demo: tuple[str, Any], page: Any) -> None:
    address, running = demo
    await virtual_authenticator(page)
    await open_demo(page, address, "Bob (without MFA)")
    assert await page.is_visible("#wallet-panel") and await page.is_visible("#provider-panel")
    assert not await page.is_visible("#totp-panel")

    # Export wallet key: the prompt, an email code from the page's inbox.
    await page.click("#export")
    await choose(page, "otp")
    await screen(page, "code")
    await page.wait_for_selector("#inbox li")
    letter = str(await page.text_content("#inbox li"))
    assert letter.endswith("to bob@demo.test")
    await page.keyboard.type(letter.split()[0])
    await page.keyboard.press("Enter")
    assert (await result(page, "Exported")).startswith("Exported wallet key 0x")

    # Again: a single-use token was spent, so it asks again; the demo wallet signs this time.
    await page.click("#export")
    await choose(page, "wallet")
    await screen(page, "button")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#wallet-dialog[open]")
    assert "wants you to sign in with your Ethereum account" in str(await page.text_content("#wallet-message"))
    await page.keyboard.press("Enter")  # "Sign" has focus
    await result(page, "Exported")

    # Update profile: the sign-in provider in a window; then again without a prompt (time-bound).
    await page.click("#profile")
    await choose(page, "social")
    await screen(page, "button")
    async with page.expect_popup():
        await page.keyboard.press("Enter")
    await result(page, "Profile updated")
    await page.evaluate("() => { document.querySelector('#result').textContent = ''; }")
    await page.click("#profile")
    await result(page, "Profile updated")
    assert await page.locator("stepup-prompt").count() == 0

    # Show my devices; link a new one (a passkey) behind a credential:link step-up.
    await page.click("#devices")
    await result(page, "3 devices")
    methods = await page.eval_on_selector_all("#device-list li", "items => items.map((i) => i.dataset.method)")
    assert sorted(methods) == ["otp", "social", "wallet"]
    await page.click("#link")
    await choose(page, "wallet")
    await screen(page, "button")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#wallet-dialog[open]")
    await page.keyboard.press("Enter")
    assert await result(page, "Linked") == "Linked a new device: This device."
    await page.wait_for_function("() => document.querySelectorAll('#device-list li').length === 4")

    # With a passkey, Bob has MFA now: the next step-up offers it alone, never re-authentication.
    await page.click("#export")
    await screen(page, "button")
    assert await page.locator("stepup-prompt input[type=radio]").count() == 0
    assert await page.locator("stepup-prompt h2").text_content() == "Use your passkey"
    await page.keyboard.press("Enter")
    await result(page, "Exported")
    assert page.errors == []

    await page.click("#sign-out")
    await page.wait_for_selector("#signed-out:not([hidden])")
    assert not running.users


async def test_the_demo_with_mfa(demo: tuple[str, Any], page: Any) -> None:
    address, _running = demo
    await open_demo(page, address, "Alice (with MFA)")
    assert await page.is_visible("#totp-panel") and await page.is_visible("#recovery-panel")
    assert not await page.is_visible("#wallet-panel")

    await page.click("#profile")
    await screen(page, "choose")
    labels = await page.eval_on_selector_all("stepup-prompt input[type=radio]", "rs => rs.map((r) => r.dataset.method)")
    assert labels == ["totp", "recovery"]  # her sign-in email is never offered
    await choose(page, "totp")
    await screen(page, "code")
    await page.keyboard.type(str(await page.text_content("#totp-code")))
    await page.keyboard.press("Enter")
    await result(page, "Profile updated")

    await page.click("#export")
    await choose(page, "recovery")
    await screen(page, "code")
    await page.keyboard.type(str(await page.text_content("#recovery-codes li")))
    await page.keyboard.press("Enter")
    await result(page, "Exported wallet key")

    # Cancelling tells the page that nothing was done.
    await page.click("#export")
    await screen(page, "choose")
    await page.keyboard.press("Escape")
    assert await result(page, "Cancelled") == "Cancelled: nothing was done."
    assert await outcome_free(page)
    assert page.errors == []


async def outcome_free(page: Any) -> bool:
    """No prompt is left in the page."""
    return await page.locator("stepup-prompt").count() == 0

