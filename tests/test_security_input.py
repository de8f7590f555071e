"""Hostile input over HTTP: oversized and deeply nested bodies, duplicate keys, text that is not
Unicode, look-alike and malformed scopes, odd ids in paths, header bytes that are not UTF-8,
and attempts to inject headers through scope names. Whatever arrives, the answer is a 4xx
problem with a stable code, never a 5xx, never a grant, and nothing is stored."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from stepup_core.errors import InvalidScope
from stepup_core.models import CredentialFormat
from stepup_core.scopes import ScopePolicies, validate_scope_syntax
from stepup_core.server import requires_scope, step_up_challenge
from stepup_core.server.routes import ROUTES
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import SERVICE_CREDENTIAL, StepUpStack, session_token

PIN = "2468"
LIMIT = 64 * 1024
APP_SCOPE = "org-unit_1:member-role_2:remove_all"  # every character a scope may hold


async def send(
    stack: StepUpStack,
    method: str,
    path: str,
    raw: bytes | None = None,
    *,
    user: str | None = "alice",
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, Any, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if user is not None:
        # Introspection is called by a service with its credential, every other route by a user.
        caller = SERVICE_CREDENTIAL if path.endswith("/introspect") else session_token(user)
        sent["Authorization"] = f"Bearer {caller}"
    data: Any = raw
    if chunked and raw is not None:
        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 8192):
                yield raw[start:start + 8192]

        data = stream()
    async with stack.http.request(method, stack.base_url + path, data=data, headers=sent) as resp:
        body = await resp.read()
        assert resp.status < 500, f"{method} {path} -> {resp.status}: {body[:300]!r}"
        parsed = json.loads(body) if body and "json" in resp.content_type else None
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json", resp.content_type
            assert isinstance(parsed, dict) and parsed["code"] and parsed["status"] == resp.status, parsed
        assert b"elevatedAccessToken" not in body or resp.status == 200
        return resp.status, resp.headers, parsed


def post(stack: StepUpStack, path: str, value: Any, **kwargs: Any) -> Any:
    return send(stack, "POST", path, json.dumps(value).encode(), **kwargs)


class Protected:
    def __init__(self) -> None:
        self.calls = 0

    def install(self, app: web.Application) -> None:
        @requires_scope(APP_SCOPE)
        async def remove(request: web.Request) -> web.Response:
            self.calls += 1
            return web.json_response({"ok": True})

        app.router.add_post("/app/remove", remove)


@pytest.fixture
def protected() -> Protected:
    return Protected()


@pytest.fixture
async def stack(protected: Protected) -> AsyncIterator[StepUpStack]:
    methods = ThrowawayPlugin([
        PinVerifier(name="pin"),
        PinVerifier(name="code", requires_challenge=False, formats=(CredentialFormat.PHONE_NUMBER,)),
    ])
    config = {"declared_scopes": [APP_SCOPE]}
    async with StepUpStack.start(plugins=[methods], config=config, setup_app=protected.install) as stack:
        for user in ("alice", "bob"):
            status, _, started = await post(stack, "/stepup/enrollments", {"method": "pin", "params": {"pin": PIN}},
                                            user=user)
            assert status == 201, started
        yield stack


async def credentials(stack: StepUpStack, user: str = "alice") -> list[tuple[str, str | None]]:
    return [(c.id, c.alias) for c in await stack.service.list_credentials(stack.principal(user))]


async def challenge(stack: StepUpStack, scopes: list[str], user: str = "alice") -> str:
    status, _, start = await post(stack, "/stepup/challenges", {"method": "pin", "requestedScopes": scopes}, user=user)
    assert status == 201, start
    return str(start["challengeId"])


BODY_ROUTES = [(spec.method, "/stepup" + spec.path.replace("{id}", "some-id")) for spec in ROUTES if spec.request]


# --- size and depth -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_an_oversized_body_is_413_on_every_route(
    stack: StepUpStack, method: str, path: str, chunked: bool
) -> None:
    raw = json.dumps({"method": "pin", "params": {"pad": "x" * LIMIT}}).encode()
    status, _, body = await send(stack, method, path, raw, chunked=chunked)
    assert status == 413 and body["code"] == "payload_too_large"


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "array" else ('{"a":' * depth + "1" + "}" * depth)


@pytest.mark.parametrize("depth", [100, 900, 1000, 3000, 10000])
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_deeply_nested_bodies_are_refused_or_ignored_never_a_server_error(
    stack: StepUpStack, method: str, path: str, depth: int, kind: str
) -> None:
    nested = _nested(depth, kind)
    if len(nested) > LIMIT:
        pytest.fail("keep the nesting under the body limit: this test is about depth")
    before = await credentials(stack)
    status, _, body = await send(stack, method, path, nested.encode())
    assert 400 <= status < 500, body
    # Inside the free-form members a method reads, depth is refused (too deep) or ignored.
    for raw in (f'{{"method":"pin","response":{{"code":"{PIN}","x":{nested}}}}}',
                f'{{"method":"pin","params":{{"pin":"{PIN}","x":{nested}}}}}'):
        status, _, body = await send(stack, method, path, raw.encode())
        assert status < 500, body
    assert await credentials(stack) == before


async def test_a_deeply_nested_answer_with_the_right_pin_still_verifies_only_what_was_asked(stack: StepUpStack) -> None:
    chl = await challenge(stack, ["user:update"])
    raw = f'{{"method":"pin","challengeId":"{chl}","response":{{"code":"{PIN}","x":{_nested(500, "array")}}}}}'
    status, _, issued = await send(stack, "POST", "/stepup/verify", raw.encode())
    assert status == 200 and issued["scopes"] == ["user:update"]


@pytest.mark.parametrize("raw", [
    b"1e999999", b'"just a string"', b"null", b"[]", b"123", b'{"scope": 1e999999}',
    b'{"scope": ' + b"9" * 5000 + b"}", b'{"scope": -0}', b'{"scope": true}',
    b'{"scope": "user:update"} {"scope": "wallet:export"}',  # two documents
    b'{"scope": "user:update", }',
], ids=lambda r: r[:24].decode("latin-1"))
async def test_odd_json_documents_are_4xx(stack: StepUpStack, raw: bytes) -> None:
    status, _, body = await send(stack, "POST", "/stepup/check", raw)
    assert status in (400, 422), body


# --- duplicate keys ---------------------------------------------------------------------------------


async def test_duplicate_keys_are_refused_and_never_widen_a_grant(stack: StepUpStack) -> None:
    """JSON with a key twice is a malformed request, wherever the key is: it cannot smuggle
    scopes past the challenge, a second challenge id, or a second method or code."""
    mine = await challenge(stack, ["user:update"])
    bobs = await challenge(stack, ["wallet:export"], user="bob")
    bodies = [
        f'{{"method":"pin","challengeId":"{mine}","challengeId":"{bobs}","response":{{"code":"{PIN}"}}}}',
        f'{{"method":"pin","challengeId":"{mine}","response":{{"code":"{PIN}"}},'
        f'"requestedScopes":["user:update"],"requestedScopes":["wallet:export"]}}',
        f'{{"method":"pin","challengeId":"{mine}","response":{{"code":"{PIN}"}},'
        f'"requestedScopes":["wallet:export"],"requestedScopes":["user:update"]}}',
        f'{{"method":"code","method":"pin","response":{{"code":"{PIN}"}},"requestedScopes":["user:update"]}}',
        f'{{"method":"pin","challengeId":"{mine}","response":{{"code":"{PIN}","code":"0000"}}}}',
    ]
    for raw in bodies:
        status, _, body = await send(stack, "POST", "/stepup/verify", raw.encode())
        assert status == 400 and body["code"] == "malformed_request", raw
        assert "appears twice" in body["detail"]
    # the challenge was not touched by any of them: the honest request still verifies once
    honest = f'{{"method":"pin","challengeId":"{mine}","response":{{"code":"{PIN}"}}}}'
    status, _, issued = await send(stack, "POST", "/stepup/verify", honest.encode())
    assert status == 200 and issued["scopes"] == ["user:update"]


# --- text that is not Unicode -----------------------------------------------------------------------


SURROGATE_BODIES = [
    ("/stepup/check", '{"scope": "user:update\\ud800"}'),
    ("/stepup/check", '{"scope\\udfff": "user:update"}'),
    ("/stepup/challenges", '{"method": "pin\\ud800", "requestedScopes": ["user:update"]}'),
    ("/stepup/verify", '{"method": "code", "response": {"code": "\\ud800\\ud800\\ud800\\ud800"}, '
                       '"requestedScopes": ["user:update"]}'),
    ("/stepup/enrollments", '{"method": "code", "params": {"pin": "\\ud800\\ud800\\ud800\\ud800"}}'),
    ("/stepup/enrollments", '{"method": "code", "alias": "\\udc00 phone", "params": {"pin": "2468"}}'),
]


@pytest.mark.parametrize(("path", "raw"), SURROGATE_BODIES, ids=[f"{p} {r[:30]}" for p, r in SURROGATE_BODIES])
async def test_lone_surrogates_are_a_malformed_request_and_nothing_is_stored(
    stack: StepUpStack, path: str, raw: str
) -> None:
    """``\\ud800`` is valid JSON syntax but no Unicode text: a method would fail hashing it, a
    store encoding it. It is refused at the door, before any method sees it."""
    before = await credentials(stack)
    status, _, body = await send(stack, "POST", path, raw.encode())
    assert status == 400 and body["code"] == "malformed_request", body
    assert await credentials(stack) == before


async def test_surrogate_bytes_and_pairs(stack: StepUpStack) -> None:
    """Raw UTF-8 of a surrogate is no UTF-8 (400); an escaped pair is one real character (accepted)."""
    status, _, body = await send(stack, "POST", "/stepup/check", b'{"scope": "user:update\xed\xa0\x80"}')
    assert status == 400 and body["code"] == "malformed_request"
    raw = '{"method": "code", "alias": "\\ud83d\\udcf1 phone", "params": {"pin": "2468"}}'
    link = await stack.service.tokens.mint(stack.principal("alice"), ["credential:link"], method="pin", ttl=60,
                                           single_use=False)
    status, _, started = await send(stack, "POST", "/stepup/enrollments", raw.encode(),
                                    headers={"X-Elevated-Access-Token": link.elevated_access_token})
    assert status == 201 and started["credential"]["alias"] == "\U0001f4f1 phone"


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"],
    ids=["utf-16 with BOM", "utf-16-le", "utf-16-be", "utf-32", "utf-8 with BOM"],
)
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_a_body_that_is_not_utf8_without_bom_is_a_malformed_request(
    stack: StepUpStack, encoding: str, method: str, path: str
) -> None:
    """The docs promise UTF-8 JSON: other encodings (which Python's parser would guess from
    the bytes) and a byte order mark are refused, whatever the route."""
    before = await credentials(stack)
    raw = json.dumps({"method": "code", "params": {"pin": PIN}, "scope": "user:update"}).encode(encoding)
    status, _, body = await send(stack, method, path, raw)
    assert status == 400 and body["code"] == "malformed_request", body
    assert "UTF-8" in body["detail"]
    assert await credentials(stack) == before


async def test_the_same_documents_in_plain_utf8_are_accepted(stack: StepUpStack) -> None:
    status, _, body = await send(stack, "POST", "/stepup/check", json.dumps({"scope": "user:update"}).encode())
    assert status == 200, body
    status, _, body = await send(stack, "POST", "/stepup/check", '{"scope": "user:update", "x": "\u00e9"}'.encode())
    assert status == 422 and body["code"] == "validation_error"  # parsed: refused for the unknown member only


async def _raw_http(
    stack: StepUpStack, request_line: bytes, headers: list[bytes], body: bytes = b""
) -> tuple[int, bytes]:
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [request_line, b"Host: " + host.encode(), b"Connection: close",
                 b"Content-Length: " + str(len(body)).encode(), *headers]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert status < 500, payload
    if status >= 400:
        assert b"application/problem+json" in head, head
    return status, payload


@pytest.mark.parametrize("session", [b"\xff\xfe\xfd" + b"a" * 20, b"alice-test-session-token\xc3", b"\xed\xa0\x80" * 8])
async def test_a_session_header_that_is_not_utf8_is_unauthenticated_not_a_server_error(
    stack: StepUpStack, session: bytes
) -> None:
    for request_line in (b"GET /stepup/credentials HTTP/1.1", b"DELETE /stepup/grants HTTP/1.1"):
        status, payload = await _raw_http(stack, request_line, [b"Authorization: Bearer " + session])
        assert status == 401 and b'"code":"unauthenticated"' in payload


# --- scopes that look right -------------------------------------------------------------------------


LOOKALIKE_SCOPES = [
    "wallet:export\n", "wallet:export\r\n", "wallet:export ", " wallet:export", "wallet:export\x00",
    "WALLET:EXPORT", "Wallet:export", "wallet:\u0435xport", "wallet:export\u200b", "wallet\uff1aexport",
    "\uff57allet:export", "wallet:éxport", "wallet::export", "wallet:export:", "wallet:*", "wallet:ex*",
    "%77allet:export", "wallet:export;user:delete", "wallet:export user:delete", "", ":", "wallet",
    "a" * 65, f"{APP_SCOPE}\n", APP_SCOPE.upper(),
]


@pytest.mark.parametrize("scope", LOOKALIKE_SCOPES, ids=[repr(s)[:40] for s in LOOKALIKE_SCOPES])
async def test_lookalike_scopes_are_invalid_everywhere(stack: StepUpStack, scope: str) -> None:
    status, _, body = await post(stack, "/stepup/check", {"scope": scope})
    assert status == 422 and body["code"] == "invalid_scope", body
    status, _, body = await post(stack, "/stepup/challenges", {"method": "pin", "requestedScopes": [scope]})
    assert status == 422 and body["code"] == "invalid_scope", body
    status, _, body = await post(stack, "/stepup/verify", {"method": "code", "response": {"code": PIN},
                                                          "requestedScopes": [scope]})
    assert status == 422 and body["code"] == "invalid_scope", body


@pytest.mark.parametrize("scope", ["wallet:export\n", "org:member\n", "org:member\r\n", 'org:member"',
                                   "org:member\x00"])
def test_a_scope_with_a_trailing_newline_or_control_character_is_not_valid_syntax(scope: str) -> None:
    """``$`` in a regular expression also matches before a final newline; scope syntax must not."""
    with pytest.raises(InvalidScope):
        validate_scope_syntax(scope)
    with pytest.raises(InvalidScope):
        requires_scope(scope)
    with pytest.raises(Exception, match="scope"):
        ScopePolicies(declared=frozenset({scope}))


async def test_a_syntactically_bad_scope_is_reported_as_such_not_as_unknown(stack: StepUpStack) -> None:
    status, _, body = await post(stack, "/stepup/check", {"scope": "user:update\n"})
    assert status == 422 and "is not a valid scope" in body["errors"][0]["message"], body


# --- header injection ------------------------------------------------------------------------------


async def test_the_step_up_challenge_header_is_exactly_one_well_formed_challenge(
    stack: StepUpStack, protected: Protected
) -> None:
    async with stack.http.post(stack.base_url + "/app/remove",
                               headers={"Authorization": f"Bearer {session_token('alice')}"}) as resp:
        assert resp.status == 401
        values = resp.headers.getall("WWW-Authenticate")
        assert "Set-Cookie" not in resp.headers
    assert len(values) == 1
    match = re.fullmatch(r'Bearer error="([^"]*)", error_description="([^"]*)", scope="([^"]*)"', values[0])
    assert match is not None, values[0]
    assert match.group(1) == "insufficient_user_authentication" and match.group(3) == APP_SCOPE
    assert protected.calls == 0


@pytest.mark.parametrize("scope", [
    'user:update"\r\nSet-Cookie: session=stolen', 'user:update", scope="wallet:export', "user:update\nX-Injected: 1",
    'user:update\\"',
])
async def test_scope_names_cannot_inject_headers(stack: StepUpStack, scope: str) -> None:
    for path, body in (("/stepup/check", {"scope": scope}),
                       ("/stepup/challenges", {"method": "pin", "requestedScopes": [scope]})):
        async with stack.http.post(stack.base_url + path, json=body,
                                   headers={"Authorization": f"Bearer {session_token('alice')}"}) as resp:
            assert resp.status == 422
            assert "Set-Cookie" not in resp.headers and "X-Injected" not in resp.headers
            assert "WWW-Authenticate" not in resp.headers
    challenge_header = step_up_challenge(scope)
    assert "\r" not in challenge_header and "\n" not in challenge_header
    assert challenge_header.count('"') == 6, challenge_header  # three quoted values, nothing broke out


# --- odd ids in paths ------------------------------------------------------------------------------


async def test_odd_ids_never_reach_a_record(stack: StepUpStack) -> None:
    mine = await challenge(stack, ["user:update"])
    credential_id = (await credentials(stack))[0][0]
    bobs_credential = (await credentials(stack, "bob"))[0][0]
    variants = {
        "upper-cased": mine.upper(), "with a newline": mine + "%0A", "with a NUL": mine + "%00",
        "percent-encoded colon": mine.replace("_", "%3A"), "dot segments": f"..%2F..%2Fchallenges%2F{mine}",
        "very long": "c" * 4000, "unicode": "chl_\u00e9\u00e9", "surrogate bytes": "%ED%A0%80",
        "half": mine[: len(mine) // 2], "with a space": mine + "%20",
    }
    for name, value in variants.items():
        status, _, body = await send(stack, "GET", f"/stepup/challenges/{value}")
        assert status == 404, (name, body)
        status, _, body = await send(stack, "DELETE", f"/stepup/credentials/{value}")
        assert status in (401, 404), (name, body)
    for value in (credential_id.upper(), credential_id + "%0A", bobs_credential, bobs_credential.replace("_", "%5F")):
        status, _, body = await send(stack, "DELETE", f"/stepup/credentials/{value}")
        assert status == 404, (value, body)
    status, _, state = await send(stack, "GET", f"/stepup/challenges/{mine}")
    assert status == 200 and state["status"] == "pending"
    assert len(await credentials(stack, "bob")) == 1


# --- markup in the browser leg ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/stepup/callback/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "/stepup/callback/%22%3E%3Csvg%20onload%3Dalert(1)%3E",
    "/stepup/callback/pin?state=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
])
async def test_the_callback_page_never_echoes_markup(stack: StepUpStack, path: str) -> None:
    """The browser leg answers HTML; whatever the URL carries comes back escaped, under a CSP
    that runs no script."""
    async with aiohttp.ClientSession() as plain, plain.get(
        yarl.URL(stack.base_url + path, encoded=True), headers={"Accept": "text/html"}
    ) as resp:
        page = await resp.text()
        assert 400 <= resp.status < 500 and resp.content_type == "text/html"
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # No tag can open without a raw "<": the echoed name is text, escaped.
    assert "<script" not in page and "<svg" not in page and "<img" not in page, page
