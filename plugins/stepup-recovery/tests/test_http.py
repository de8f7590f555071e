"""stepup-recovery over HTTP: the real server on loopback, StepUpClient with the recovery client half.

Every answer the client receives is checked against stepup's OpenAPI document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from stepup_recovery import plugin as recovery_plugin
from stepup_recovery.client import RecoveryCodeSheet

from stepup_core import errors
from stepup_core.client import ScriptedPrompter, StepUpClient
from stepup_core.identify import StaticTokenIdentify
from stepup_core.models import IssuedToken, Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, build_document, serve_app
from stepup_core.server.testing import ResponseValidator

ALICE_TOKEN = "alice-session-token-00000001"
ALICE = Principal("alice", "s-alice")
COMPANION_CODE = "companion-ok"


@attrs.define
class Http:
    base_url: str
    http: aiohttp.ClientSession
    validator: ResponseValidator
    client_pm: Any

    def client(self, **kwargs: Any) -> StepUpClient:
        return StepUpClient(self.base_url, ALICE_TOKEN, pm=self.client_pm, http=self.http, **kwargs)


@pytest.fixture
async def http_stack(service: Any) -> AsyncIterator[Http]:
    app = build_app(service, StaticTokenIdentify.from_mapping({ALICE_TOKEN: ALICE}))
    serving = serve_app(app)
    base_url = await serving.__aenter__()
    validator = ResponseValidator(build_document("/stepup"), prefix="/stepup")
    http = aiohttp.ClientSession(middlewares=[validator.middleware])
    client_pm = get_plugin_manager(load_entrypoints=False)
    client_pm.register(recovery_plugin, name="recovery")
    try:
        yield Http(base_url, http, validator, client_pm)
    finally:
        await http.close()
        await serving.__aexit__(None, None, None)


async def test_codes_alone_cannot_step_up(http_stack: Http) -> None:
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        view = await client.enroll("recovery")
        assert view.details == {"remaining": 10, "total": 10}
        assert sheet.remaining == 10
        with pytest.raises(errors.MethodNotAllowed):
            await client.verify_recovery_code(sheet.codes[0], requested_scopes=["wallet:export"])


async def test_generate_use_and_count_over_http(http_stack: Http, flows: Any) -> None:
    await flows.add_companion(ALICE)
    sheet = RecoveryCodeSheet()
    async with http_stack.client(actors={"recovery": sheet}, prompter=ScriptedPrompter()) as client:
        await client.step_up("companion", requested_scopes=["credential:link"], code=COMPANION_CODE)
        view = await client.enroll("recovery")
        assert view.method == "recovery" and view.details == {"remaining": 10, "total": 10}
        # Unattended: the sheet hands out an unused code.
        token = await client.step_up("recovery", requested_scopes=["wallet:export"])
        assert token.method == "recovery"
        used = sheet.used[-1]
        with pytest.raises(errors.VerificationFailed):
            await client.verify_recovery_code(used, requested_scopes=["wallet:export"])
        # Typed by hand, in capitals with spaces.
        typed = sheet.next_code().upper().replace("-", " ")
        assert (await client.verify_recovery_code(typed, requested_scopes=["wallet:export"])).method == "recovery"
        listing = {c.method: c for c in await client.list_credentials()}
        assert listing["recovery"].details == {"remaining": 8, "total": 10}
        # Simultaneous submissions of one code over HTTP: one grant.
        code = sheet.next_code()
        results = await asyncio.gather(
            *(client.verify_recovery_code(code, requested_scopes=["wallet:export"]) for _ in range(10)),
            return_exceptions=True,
        )
        assert len([r for r in results if isinstance(r, IssuedToken)]) == 1
        assert all(isinstance(r, errors.StepUpError) for r in results if not isinstance(r, IssuedToken))
    assert ("GET", "/stepup/credentials", 200) in http_stack.validator.seen
