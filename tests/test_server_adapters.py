"""The adapters of the one route table answer alike: aiohttp (``mount``), the pure-ASGI
application (served by uvicorn) and the WSGI application (a threaded WSGI server, the service in
a portal) give the same OpenAPI document, byte for byte, and the same answers (status, headers
that matter, body) to the same requests, errors included. The ASGI application routes below
where it is mounted, falls back to another application, and loads no web framework."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from stepup_core.portal import HostedService
from stepup_core.server import build_app, document_for
from stepup_core.server.asgi import StepUpASGI
from stepup_core.server.sync import StepUpWSGI
from stepup_core.testing.servers import serve_wsgi

ALICE = {"Authorization": "Bearer alice:s1"}
COMPARED_HEADERS = (
    "Content-Type", "Cache-Control", "WWW-Authenticate", "Allow", "Retry-After", "ETag", "Vary",
    "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Expose-Headers",
)
APP_ORIGIN = "https://app.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}

#: (method, path, headers, body bytes or None): requests whose answers do not depend on random ids.
CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/stepup/openapi.json", {}, None),
    ("GET", "/stepup/methods", {}, None),
    ("GET", "/stepup/plugins", {}, None),
    ("GET", "/stepup/credentials", ALICE, None),
    ("GET", "/stepup/credentials", {}, None),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b'{"scope": "wallet:export"}'),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b'{"scope": "nope:nope"}'),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b'{"scope": 1, "x": 2}'),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b'{"scope": "a", "scope": "b"}'),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b"{not json"),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b""),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "text/plain"}, b'{"scope": "user:update"}'),
    ("POST", "/stepup/check", {**ALICE, "Content-Type": "application/json"}, b'{"scope": "' + b"x" * 70000 + b'"}'),
    ("POST", "/stepup/check", {"Content-Type": "application/json"}, b'{"scope": "user:update"}'),
    ("PUT", "/stepup/check", ALICE, None),
    ("HEAD", "/stepup/methods", {}, None),
    ("DELETE", "/stepup/credentials/nope", ALICE, None),
    ("DELETE", "/stepup/credentials/nope", {**ALICE, "X-Elevated-Access-Token": "sut_x"}, None),
    ("PUT", "/stepup/credentials/abc", ALICE, None),
    ("GET", "/stepup/nothing", {}, None),
    ("GET", "/stepup/", {}, None),
    ("GET", "/stepup/challenges/a/b", ALICE, None),
    ("GET", "/stepup/challenges/unknown", ALICE, None),
    ("GET", "/stepup/callback/pin?state=x", {"Accept": "text/html"}, None),
    ("GET", "/stepup/callback/pin?state=x", {}, None),
    ("DELETE", "/stepup/grants", ALICE, None),
    ("GET", "/stepup/static/stepup.js", {}, None),
    ("GET", "/stepup/static/stepup.js", {"If-None-Match": "*"}, None),
    ("GET", "/stepup/static/nothing.js", {}, None),
    ("GET", "/stepup/methods/pin/browser.js", {}, None),
    ("OPTIONS", "/stepup/check", {"Origin": APP_ORIGIN, **PREFLIGHT}, None),
    ("OPTIONS", "/stepup/check", {"Origin": "https://evil.example", **PREFLIGHT}, None),
    ("GET", "/stepup/methods", {"Origin": APP_ORIGIN}, None),
    ("GET", "/stepup/methods", {"Origin": "https://evil.example"}, None),
]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"server": {"cors_origins": [APP_ORIGIN]}}


async def _answers(client: Any) -> list[tuple[int, dict[str, str | None], bytes]]:
    out = []
    for method, path, headers, body in CASES:
        async with client.request(method, path, headers=headers, data=body) as resp:
            raw = await resp.read()
            out.append((resp.status, {h: resp.headers.get(h) for h in COMPARED_HEADERS}, raw))
    return out


@pytest.fixture
def hosted(pm: Any, clock: Any, service: Any) -> Iterator[HostedService]:
    """A service like ``service`` (same plugins, clock and configuration) living in a portal."""
    hosted = HostedService.open(config=service.config, pm=pm, clock=clock)
    yield hosted
    hosted.close()


@pytest.fixture
async def wsgi_client(hosted: HostedService, identify: Any) -> AsyncIterator[Any]:
    app = StepUpWSGI(hosted.service, hosted.portal, identify)
    with serve_wsgi(app) as base_url:
        async with aiohttp.ClientSession(base_url=base_url) as session:
            yield session


async def test_every_adapter_answers_every_case_alike(
    service: Any, identify: Any, http_client: Any, asgi_client: Any, wsgi_client: Any
) -> None:
    over_aiohttp = await _answers(await http_client(build_app(service, identify)))
    over_asgi = await _answers(await asgi_client(StepUpASGI(service, identify)))
    over_wsgi = await _answers(wsgi_client)
    for case, left, asgi, wsgi in zip(CASES, over_aiohttp, over_asgi, over_wsgi, strict=True):
        assert left == asgi, f"{case[0]} {case[1]}: aiohttp {left!r} != asgi {asgi!r}"
        assert left == wsgi, f"{case[0]} {case[1]}: aiohttp {left!r} != wsgi {wsgi!r}"
    statuses = [status for status, _, _ in over_aiohttp]
    # The cases cover success and every kind of refusal.
    assert {200, 204, 304, 400, 401, 403, 404, 405, 413, 415, 422} <= set(statuses)


async def test_the_openapi_document_is_the_same_whichever_adapter_serves_it(
    service: Any, identify: Any, http_client: Any, asgi_client: Any, wsgi_client: Any
) -> None:
    served = []
    for client in (
        await http_client(build_app(service, identify)), await asgi_client(StepUpASGI(service, identify)), wsgi_client
    ):
        async with client.get("/stepup/openapi.json") as resp:
            assert resp.status == 200
            served.append(await resp.read())
    assert served[0] == served[1] == served[2]
    assert json.loads(served[0]) == document_for(service, "/stepup")


# --- the ASGI application on its own -------------------------------------------------------------


async def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    base = {"type": "http", "method": "GET", "headers": [], "query_string": b"", "root_path": ""}
    await app({**base, **scope}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body_out


@pytest.mark.parametrize(
    ("root_path", "path"),
    [
        ("", "/stepup/methods"),  # served on its own
        ("/stepup", "/stepup/methods"),  # Starlette's Mount("/stepup"): root_path is the mount
        ("/stepup", "/methods"),  # servers that strip root_path from path
        ("/api", "/api/stepup/methods"),  # behind a proxy's root path
        ("/api/stepup", "/api/stepup/methods"),  # mounted, behind a proxy
    ],
)
async def test_asgi_routes_below_where_it_is_mounted(service: Any, identify: Any, root_path: str, path: str) -> None:
    status, headers, body = await _call(StepUpASGI(service, identify), {"root_path": root_path, "path": path})
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert {m["name"] for m in json.loads(body)} == {"pin"}


async def test_asgi_hands_other_paths_to_the_fallback(service: Any, identify: Any) -> None:
    seen: list[str] = []

    async def other(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"the application"})

    app = StepUpASGI(service, identify, fallback=other)
    assert await _call(app, {"path": "/home"}) == (200, {"content-type": "text/plain"}, b"the application")
    assert (await _call(app, {"path": "/stepupx"}))[2] == b"the application"
    assert (await _call(app, {"path": "/stepup/methods"}))[0] == 200
    assert seen == ["/home", "/stepupx"]


async def test_asgi_without_fallback_answers_other_paths_with_a_404_problem(service: Any, identify: Any) -> None:
    status, headers, body = await _call(StepUpASGI(service, identify), {"path": "/elsewhere"})
    assert status == 404
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["code"] == "not_found"


async def test_asgi_answers_the_lifespan_protocol_and_closes_websockets(service: Any, identify: Any) -> None:
    app = StepUpASGI(service, identify)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    await app({"type": "websocket", "path": "/stepup/methods"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]


async def test_asgi_refuses_a_body_past_the_limit_while_reading_it(service: Any, identify: Any) -> None:
    app = StepUpASGI(service, identify)
    limit = service.config.server.max_body_bytes
    chunks = [{"type": "http.request", "body": b"x" * 4096, "more_body": True} for _ in range(limit // 4096 + 2)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/stepup/check", "root_path": "", "query_string": b"",
        "headers": [(b"authorization", b"Bearer alice:s1"), (b"content-type", b"application/json")],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "payload_too_large"
    assert len(chunks) < 3  # stopped reading soon after the limit


def test_the_asgi_application_loads_no_web_framework() -> None:
    code = (
        "import sys, stepup_core.server.asgi, stepup_core.server.sync, stepup_core.portal; "
        "print(sorted(m for m in ('aiohttp', 'starlette', 'fastapi', 'django', 'flask') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_asgi_serves_the_admin_api_only_with_an_admin_identify(service: Any, identify: Any) -> None:
    from stepup_core.models import Principal

    async def operators(request: Any) -> Principal | None:
        return Principal("ops", "ops") if request.headers.get("Authorization") == "Bearer operator" else None

    plain = StepUpASGI(service, identify)
    assert (await _call(plain, {"path": "/stepup/admin/users/alice"}))[0] == 404
    admin = StepUpASGI(service, identify, admin_identify=operators)
    status, _, body = await _call(admin, {"path": "/stepup/admin/users/alice"})
    assert (status, json.loads(body)["code"]) == (401, "unauthenticated")
    status, _, body = await _call(
        admin, {"path": "/stepup/admin/users/alice", "headers": [(b"authorization", b"Bearer operator")]}
    )
    assert status == 200 and json.loads(body)["userId"] == "alice"
    status, _, body = await _call(admin, {"path": "/stepup/openapi.json"})
    assert "/stepup/admin/users/{userId}" in json.loads(body)["paths"]
    with pytest.raises(Exception, match="never the users' identify"):
        StepUpASGI(service, identify, admin_identify=identify)
