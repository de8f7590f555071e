"""What the server does for the browser: the browser client's files and each method's browser
half (ETags, 304, 404), ``browserModule`` in ``GET /methods``, CORS for ``[server] cors_origins``
(exact origins, preflights, exposed headers, refusals) and the callback page's script."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError
from stepup_core.server import build_app
from stepup_core.testing.methods import PinVerifier, RedirectVerifier

ALICE = {"Authorization": "Bearer alice:s1"}
APP = "https://app.example.com"
STATIC = Path(__file__).resolve().parents[1] / "stepup_core" / "static"


@attrs.define
class PinWithModule(PinVerifier):
    browser_module: Any = None


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    path = tmp_path / "pin.js"
    path.write_text('export default { name: "pin", answer: () => ({}) };\n', encoding="utf-8")
    return path


@pytest.fixture
def methods(methods: Any, module_file: Path) -> Any:
    methods.verifiers[0] = PinWithModule(
        factor=methods.verifiers[0].factor, formats=methods.verifiers[0].formats, browser_module=module_file
    )
    methods.verifiers.append(RedirectVerifier(name="link"))
    return methods


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"server": {"cors_origins": [APP, "http://localhost:5173"]}}


@pytest.fixture
async def client(service: Any, identify: Any, http_client: Any) -> Any:
    return await http_client(build_app(service, identify))


@pytest.fixture
async def plain(service: Any, identify: Any) -> Any:
    """A client without the OpenAPI check, for preflights (OPTIONS is not an operation)."""
    made: TestClient[Any, Any] = TestClient(TestServer(build_app(service, identify)))
    await made.start_server()
    yield made
    await made.close()


# --- files ------------------------------------------------------------------------------------


async def test_the_browser_client_is_served_with_an_etag(client: Any) -> None:
    first = await client.get("/stepup/static/stepup.js")
    assert first.status == 200 and first.content_type == "text/javascript"
    assert await first.read() == (STATIC / "stepup.js").read_bytes()
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get("/stepup/static/stepup.js", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    stale = await client.get("/stepup/static/stepup.js", headers={"If-None-Match": '"0000"'})
    assert stale.status == 200
    for name in ("react.js", "callback.js"):
        assert (await client.get(f"/stepup/static/{name}")).status == 200


@pytest.mark.parametrize("name", ["package.json", "stepup.d.ts", "..%2Fconfig.py", "nope.js"])
async def test_only_the_browser_files_are_served(client: Any, name: str) -> None:
    answer = await client.get(f"/stepup/static/{name}")
    assert answer.status == 404
    assert (await answer.json())["code"] == "not_found"


async def test_methods_list_the_browser_module_and_the_server_serves_it(client: Any, module_file: Path) -> None:
    listed = {m["name"]: m for m in await (await client.get("/stepup/methods")).json()}
    assert listed["pin"]["browserModule"] == "/stepup/methods/pin/browser.js"
    assert listed["link"]["browserModule"] is None
    module = await client.get("/stepup/methods/pin/browser.js")
    assert module.status == 200 and module.content_type == "text/javascript"
    assert await module.read() == module_file.read_bytes()
    cached = await client.get("/stepup/methods/pin/browser.js", headers={"If-None-Match": module.headers["ETag"]})
    assert cached.status == 304
    for missing in ("/stepup/methods/link/browser.js", "/stepup/methods/nope/browser.js"):
        answer = await client.get(missing)
        assert answer.status == 404 and (await answer.json())["code"] == "not_found"


async def test_every_first_party_plugin_ships_its_browser_module() -> None:
    plugins = Path(__file__).resolve().parents[1] / "plugins"
    for folder in ("otp", "totp", "passkey", "wallet", "social", "recovery", "example"):
        module = next((plugins / f"stepup-{folder}" / "src").glob("*/browser.js"))
        text = module.read_text(encoding="utf-8")
        assert "export default" in text and "eval(" not in text and "new Function" not in text
        verifier = (module.parent / "verifier.py").read_text(encoding="utf-8")
        assert 'browser_module = files("' in verifier


# --- CORS -----------------------------------------------------------------------------------


async def test_a_listed_origin_may_read_answers_and_their_challenge_headers(client: Any) -> None:
    answer = await client.post(
        "/stepup/credentials/nope", headers={**ALICE, "Origin": APP}
    )  # 405: any answer, problems included, carries the headers
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = {h.strip() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"WWW-Authenticate", "Retry-After"} <= exposed
    assert "Origin" in answer.headers["Vary"]
    unauthenticated = await client.get("/stepup/credentials", headers={"Origin": "http://localhost:5173"})
    assert unauthenticated.status == 401
    assert unauthenticated.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "WWW-Authenticate" in unauthenticated.headers


async def test_other_origins_get_no_cors_headers(client: Any) -> None:
    for origin in ("https://evil.example", "https://app.example.com.evil.example", "null", "http://app.example.com"):
        answer = await client.get("/stepup/methods", headers={"Origin": origin})
        assert answer.status == 200
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert "Access-Control-Allow-Credentials" not in answer.headers


async def test_preflights(plain: Any) -> None:
    ok = await plain.options(
        "/stepup/verify",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Authorization, Content-Type, X-Elevated-Access-Token"},
    )
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert ok.headers["Access-Control-Allow-Methods"] == "GET, POST, PATCH, DELETE"
    assert ok.headers["Access-Control-Allow-Headers"] == "authorization, content-type, x-elevated-access-token"
    assert ok.headers["Access-Control-Max-Age"] == "600"
    refused = await plain.options(
        "/stepup/verify", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status == 403
    assert (await refused.json())["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    # A plain OPTIONS (no preflight) is an HTTP method the routes do not have.
    assert (await plain.options("/stepup/verify", headers={"Origin": APP})).status == 405


@pytest.mark.parametrize(
    "origin",
    ["*", "null", "https://*.example.com", "https://app.example.com/path", "ftp://x.example", "app.example.com"],
)
def test_cors_origins_are_exact_origins(origin: str) -> None:
    with pytest.raises(ConfigError, match="cors_origins"):
        config_from_mapping({"server": {"cors_origins": [origin]}})


def test_cors_origins_are_normalised_as_browsers_send_them() -> None:
    config = config_from_mapping({"server": {"cors_origins": ["HTTPS://App.Example.com:443/", "http://[::1]:8080"]}})
    assert config.server.cors_origins == ("https://app.example.com", "http://[::1]:8080")
    assert config_from_mapping({}).server.cors_origins == ()


# --- the callback page -----------------------------------------------------------------------


async def test_the_callback_page_loads_its_script_from_its_own_origin_only(client: Any) -> None:
    start = await client.post("/stepup/enrollments", json={"method": "link"}, headers=ALICE)
    url = (await start.json())["data"]["authorizationUrl"]
    query = parse_qs(urlsplit(url).query)
    callback = urlsplit(query["redirect_uri"][0]).path
    page = await client.get(
        callback, params={"state": query["state"][0], "code": "approved", "sub": "a"}, headers={"Accept": "text/html"}
    )
    assert page.status == 200
    html = await page.text()
    tag = re.search(
        r'<script src="/stepup/static/callback\.js" data-method="link" data-targets=\'([^\']*)\'></script>', html
    )
    assert tag is not None, html
    assert json.loads(tag.group(1).replace("&quot;", '"')) == [APP, "http://localhost:5173"]
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1]
    # A failure page shows what went wrong and runs no script at all.
    failed = await client.get(callback, params={"state": "unknown"}, headers={"Accept": "text/html"})
    assert failed.status >= 400 and "<script" not in await failed.text()
    assert "script-src" not in failed.headers["Content-Security-Policy"]
