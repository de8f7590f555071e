"""Cross-origin: a page on the application's origin steps up against `stepup serve` on another
origin, then calls the application's own backend, which checks the token in the store it shares
with stepup. With `[server] cors_origins` listing the page's origin it works; without, the
browser refuses every call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stepup_core.config import config_from_mapping
from stepup_core.errors import StepUpError
from stepup_core.identify import StaticTokenIdentify
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import serve_app
from stepup_core.server.problems import problem_response
from stepup_core.service import StepUpService

from .conftest import ROOT
from .harness import PAGE, free_port, session_token

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOKEN = session_token("alice")


@contextlib.asynccontextmanager
async def stepup_serve(tmp: Path, secret: str, cors: list[str]) -> AsyncIterator[str]:
    """`stepup serve` in its own process, with the PIN method only; yields its base URL."""
    port = free_port()
    config = tmp / f"stepup-{port}.toml"
    config.write_text(
        f"""store = "sqlite:{tmp / 'stepup.sqlite3'}"
secret_key = "{secret}"

[server]
public_url = "http://localhost:{port}"
cors_origins = {json.dumps(cors)}

[identify]
mode = "tokens"

[identify.tokens."{TOKEN}"]
user_id = "alice"
session_id = "alice-session"
""",
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stepup_core.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
        "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "STEPUP_LOAD_PLUGINS": "pin"}, cwd=tmp,
    )
    try:
        assert process.stdout is not None
        seen = b""
        while b"stepup listening on" not in seen:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line, f"stepup serve ended early: {seen.decode()}"
            seen += line
        yield f"http://localhost:{port}"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)


@contextlib.asynccontextmanager
async def application(tmp: Path, secret: str, stepup: str, port: int = 0) -> AsyncIterator[str]:
    """The application's own backend on another origin: the page, a copy of stepup.js (as a
    bundler would ship it), and a protected route checked against the shared store."""
    import stepup_example.plugin

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_example.plugin, name="pin")
    config = config_from_mapping({"store": f"sqlite:{tmp / 'stepup.sqlite3'}", "secret_key": secret})
    service = await StepUpService.create(config, pm=pm)
    identify = StaticTokenIdentify.from_mapping({TOKEN: Principal("alice", "alice-session")})
    csp = f"default-src 'self'; script-src 'self' {stepup}; connect-src 'self' {stepup}"

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": csp})

    async def vendored(request: web.Request) -> web.Response:
        body = (ROOT / "stepup_core" / "static" / "stepup.js").read_bytes()
        return web.Response(body=body, content_type="text/javascript")

    async def profile(request: web.Request) -> web.Response:
        try:
            principal = await identify(request)
            assert principal is not None
            token = request.headers.get("X-Elevated-Access-Token")
            grant = await service.require_scope(principal, "user:update", token)
        except StepUpError as exc:
            return problem_response(exc)
        return web.json_response({"updated": True, "method": grant and grant.method})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/vendor/stepup.js", vendored)
    app.router.add_post("/app/profile", profile)
    try:
        async with serve_app(app, host="127.0.0.1", port=port or free_port()) as base:
            yield base
    finally:
        await service.close()


async def preflight(stepup: str, origin: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.options(
        f"{stepup}/stepup/verify",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    ) as answer:
        body = await answer.json() if answer.content_type.endswith("json") else None
        return answer.status, dict(answer.headers), body


STEP_UP = """async ([stepup, token, module]) => {
    const { createStepUp } = await import(module);
    const stepUp = createStepUp({ baseUrl: stepup + "/stepup", headers: { Authorization: "Bearer " + token } });
    const out = {};
    try {
        await stepUp.enroll({ method: "pin", code: "246810" });
        out.token = await stepUp.verify({ method: "pin", code: "246810", requestedScopes: ["user:update"] });
        const answer = await stepUp.fetch("/app/profile", { method: "POST", scope: "user:update" });
        out.status = answer.status;
        out.body = await answer.json();
    } catch (e) { out.error = e.code; out.message = e.message; }
    out.check = await stepUp.checkStepUpAuth({ scope: "user:update" });
    out.checkError = stepUp.state.error && stepUp.state.error.code;
    return out;
}"""


async def test_cross_origin_with_cors_configured(tmp_path: Path, page: Any) -> None:
    secret = secrets.token_hex(32)
    app_port = free_port()  # the application's origin, listed in the stepup server's configuration
    origin = f"http://127.0.0.1:{app_port}"
    async with stepup_serve(tmp_path, secret, [origin]) as stepup:
        status, headers, _ = await preflight(stepup, origin)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert "authorization" in headers["Access-Control-Allow-Headers"]
        status, headers, body = await preflight(stepup, "http://evil.example")
        assert status == 403 and body["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in headers

        async with application(tmp_path, secret, stepup, app_port) as app:
            assert app == origin
            await page.goto(app + "/")
            result = await page.evaluate(STEP_UP, [stepup, TOKEN, stepup + "/stepup/static/stepup.js"])
    assert "error" not in result, result
    assert result["token"]["method"] == "pin"
    assert result["status"] == 200 and result["body"] == {"updated": True, "method": "pin"}
    # The time-bound token the page holds is checked across origins too: no step-up needed now.
    assert result["check"]["isRequired"] is False and result["checkError"] is None


async def test_cross_origin_refused_without_cors(tmp_path: Path, page: Any) -> None:
    secret = secrets.token_hex(32)
    async with stepup_serve(tmp_path, secret, []) as stepup, application(tmp_path, secret, stepup) as app:
        status, _, body = await preflight(stepup, app)
        assert status == 403 and body["code"] == "origin_not_allowed"
        await page.goto(app + "/")
        # The browser refuses to load the module from the other origin ...
        refused = await page.evaluate(
            "async (url) => { try { await import(url); return 'loaded'; } catch (e) { return e.name; } }",
            stepup + "/stepup/static/stepup.js",
        )
        assert refused == "TypeError"
        # ... and, with a copy of the client shipped by the application, every call.
        result = await page.evaluate(STEP_UP, [stepup, TOKEN, "/vendor/stepup.js"])
    assert result["error"] == "network_error"
    assert "cors_origins" in result["message"]
    assert result["check"]["isRequired"] is True and result["checkError"] == "network_error"
