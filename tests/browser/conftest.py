"""Browser tests: Debian's Chromium driven by Playwright (no browser download).

Run with ``nox -s browser`` (which installs what they need) or ``pytest tests/browser``. The
browser is ``$STEPUP_CHROMIUM``, else ``chromium`` on PATH. Without it (or without the npm
packages, for the React test) the tests fail under CI and are skipped elsewhere, naming what to
install.

Every test module here runs in the session's event loop, where the browser lives:
``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    found = os.environ.get("STEPUP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        missing("Chromium is not installed (apt-get install chromium, or set STEPUP_CHROMIUM)")
    return str(found)


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any) -> AsyncIterator[Any]:
    made = await browser.new_context()
    try:
        yield made
    finally:
        await made.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: Any) -> AsyncIterator[Any]:
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # Uncaught errors and console errors, not the browser's notes on refused requests (a test's 401s).
    opened.on(
        "console",
        lambda message: errors.append(message.text)
        if message.type == "error" and not message.text.startswith("Failed to load resource")
        else None,
    )
    opened.errors = errors
    yield opened


@pytest_asyncio.fixture(loop_scope="session")
async def provider() -> AsyncIterator[Any]:
    from stepup_social.testing import LoopbackProvider

    from .harness import ShiftedClock

    started = await LoopbackProvider(clock=ShiftedClock().now).start()
    try:
        yield started
    finally:
        await started.close()


@pytest_asyncio.fixture(loop_scope="session")
async def site(provider: Any) -> AsyncIterator[Any]:
    from .harness import SiteRunner

    async with SiteRunner(provider=provider) as running:
        yield running
