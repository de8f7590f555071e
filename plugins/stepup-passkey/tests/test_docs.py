"""The documentation stays in step with the code: its configuration examples load, every setting
is documented, its JSON examples are JSON, and its browser JavaScript runs against the real
server (in Node.js, with a WebAuthn stand-in backed by the software authenticator)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import stepup_passkey.plugin
from aiohttp import web
from stepup_passkey.config import PasskeySettings
from stepup_passkey.plugin import make_verifier
from stepup_passkey.testing import SoftwareAuthenticator

from stepup_core.config import config_from_mapping
from stepup_core.models import EnrollmentCompletion, EnrollmentRequest
from stepup_core.server import requires_scope
from stepup_core.testing.stack import StepUpStack, session_token

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
DOC_PAGE = PLUGIN_ROOT.parents[1] / "docs" / "plugins" / "passkey.md"
README = PLUGIN_ROOT / "README.md"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("document", [DOC_PAGE, README], ids=["docs-page", "readme"])
def test_configuration_examples_load(document: Path) -> None:
    [example] = blocks(document.read_text(encoding="utf-8"), "toml")
    verifier = make_verifier(config_from_mapping(tomllib.loads(example)))
    assert verifier.settings.rp_id == "example.com"
    assert verifier.settings.effective_origins == ("https://example.com", "https://app.example.com")


def test_every_setting_is_documented() -> None:
    page = DOC_PAGE.read_text(encoding="utf-8")
    for field in attrs.fields(PasskeySettings):
        assert f"| `{field.name}` |" in page, f"{field.name} has no row in the settings table"
        assert f"{field.name} = " in page, f"{field.name} is not in the configuration example"


def test_json_examples_are_json() -> None:
    examples = blocks(DOC_PAGE.read_text(encoding="utf-8"), "json")
    assert len(examples) == 4
    for example in examples:
        json.loads(example)


def test_the_event_and_error_codes_named_in_the_docs_exist() -> None:
    from stepup_passkey.client import AuthenticatorFailed, SecurityKeyNotFound
    from stepup_passkey.verifier import SIGN_COUNT_EVENT

    page = DOC_PAGE.read_text(encoding="utf-8")
    for name in (SIGN_COUNT_EVENT, SecurityKeyNotFound.code, AuthenticatorFailed.code):
        assert f"`{name}`" in page


# --- the browser example, run in Node.js ---------------------------------------------------

ORIGIN = "https://app.example.com"

JS = Path(__file__).resolve().parent / "js"


async def test_browser_example_runs_against_the_server(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is needed to run the documentation's browser example")
        pytest.skip("Node.js is not installed; the documentation's browser example was not run")
    [example] = blocks(DOC_PAGE.read_text(encoding="utf-8"), "js")

    first = SoftwareAuthenticator(origin=ORIGIN)
    second = SoftwareAuthenticator(origin=ORIGIN, algorithms=("EdDSA",))
    exports: list[str] = []

    async def create(request: web.Request) -> web.Response:
        return web.json_response(second.create(await request.json()))

    async def get(request: web.Request) -> web.Response:
        return web.json_response(first.get(await request.json()))

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response:
        exports.append(request.headers["X-Elevated-Access-Token"])
        return web.json_response({"exported": True})

    def routes(app: web.Application) -> None:
        app.router.add_post("/authenticator/create", create)
        app.router.add_post("/authenticator/get", get)
        app.router.add_post("/wallet/export", export_key)

    script = tmp_path / "example.mjs"
    harness = (JS / "harness.mjs").read_text(encoding="utf-8")
    epilogue = (JS / "epilogue.mjs").read_text(encoding="utf-8")
    script.write_text(harness + example + epilogue, encoding="utf-8")
    config = {"plugins": {"passkey": {"rp_id": "example.com", "rp_name": "Example", "origins": [ORIGIN]}}}
    async with StepUpStack.start(
        plugins=[stepup_passkey.plugin], config=config, users=["alice"], setup_app=routes
    ) as stack:
        # The page's user already has a passkey (on `first`); the example steps up with it, then
        # registers a second one (on `second`) with a credential:link token.
        principal = stack.principal("alice")
        start = await stack.service.begin_enrollment(principal, EnrollmentRequest(method="passkey"))
        response: dict[str, Any] = {"credential": first.create(start.data["publicKey"])}
        await stack.service.complete_enrollment(principal, start.enrollment_id, EnrollmentCompletion(response))
        process = await asyncio.create_subprocess_exec(
            node, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "STEPUP_BASE": stack.base_url, "STEPUP_SESSION": session_token("alice")},
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "browser example ok"
    assert len(exports) == 1 and exports[0].startswith("sut_")
    assert first.credentials[0].sign_count == 2  # wallet:export, then credential:link
    assert len(second.credentials) == 1
