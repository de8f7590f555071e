"""Attacks on elevated access tokens over HTTP: each test tries to use a token where it must not
work (another user, session or scope; a forged, mangled, oversized or non-ASCII token; a token
sent anywhere but its header), to use a single-use token twice under concurrency, or to use a
token past its expiry. Each fails if the attack works."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from stepup_core.models import ChallengeRequest, CredentialFormat, Principal, VerifyRequest
from stepup_core.server import requires_scope
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token

PIN = "2468"
PROTECTED = {"/app/profile": "user:update", "/app/delete-account": "user:delete", "/app/export-key": "wallet:export"}


class Handlers:
    """The application's protected routes; ``calls`` records every time a handler ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def install(self, app: web.Application) -> None:
        for path, scope in PROTECTED.items():

            @requires_scope(scope)
            async def handler(request: web.Request, _path: str = path) -> web.Response:
                self.calls.append(_path)
                return web.json_response({"ok": True})

            app.router.add_post(path, handler)


async def call(
    stack: StepUpStack,
    method: str,
    path: str,
    *,
    user: str | None = "alice",
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One request as ``user`` (None: anonymous); returns status, headers and parsed body."""
    sent = dict(headers or {})
    if user is not None:
        sent.setdefault("Authorization", f"Bearer {session_token(user)}")
    if token is not None:
        sent["X-Elevated-Access-Token"] = token
    async with stack.http.request(method, stack.base_url + path, json=body, headers=sent, params=params) as resp:
        raw = await resp.read()
        assert resp.status < 500, f"{method} {path} -> {resp.status}: {raw[:300]!r}"
        parsed = await resp.json(content_type=None) if raw and "json" in resp.content_type else None
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json" and parsed["code"], parsed
        return resp.status, resp.headers, parsed


async def token_for(stack: StepUpStack, user: str, *scopes: str) -> str:
    """Prove ``user``'s PIN over HTTP and return the token."""
    status, _, start = await call(stack, "POST", "/stepup/challenges", user=user,
                                  body={"method": "pin", "requestedScopes": list(scopes)})
    assert status == 201, start
    status, _, issued = await call(stack, "POST", "/stepup/verify", user=user,
                                   body={"method": "pin", "challengeId": start["challengeId"],
                                         "response": {"code": PIN}})
    assert status == 200, issued
    return str(issued["elevatedAccessToken"])


async def enrol(stack: StepUpStack, user: str, method: str = "pin", token: str | None = None) -> str:
    status, _, started = await call(stack, "POST", "/stepup/enrollments", user=user, token=token,
                                    body={"method": method, "params": {"pin": PIN}})
    assert status == 201, started
    return str(started["credential"]["id"])


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def stack(handlers: Handlers) -> AsyncIterator[StepUpStack]:
    methods = ThrowawayPlugin([
        PinVerifier(name="pin"),
        PinVerifier(name="code", requires_challenge=False, formats=(CredentialFormat.PHONE_NUMBER,)),
    ])
    config = {"scopes": {"credential:unlink": {"token_behavior": "single_use"}}}
    async with StepUpStack.start(plugins=[methods], config=config, setup_app=handlers.install) as stack:
        for user in ("alice", "bob"):
            await enrol(stack, user)
        yield stack


async def assert_refused(stack: StepUpStack, handlers: Handlers, path: str, token: str | None, **kwargs: Any) -> None:
    before = len(handlers.calls)
    status, headers, body = await call(stack, "POST", path, token=token, **kwargs)
    assert status == 401, body
    assert body["code"] == "insufficient_user_authentication"
    assert headers["WWW-Authenticate"].startswith('Bearer error="insufficient_user_authentication"')
    assert f'scope="{PROTECTED[path]}"' in headers["WWW-Authenticate"]
    assert len(handlers.calls) == before, "the protected handler ran"


# --- binding ---------------------------------------------------------------------------------


async def test_a_token_opens_only_its_own_users_session_and_scope(stack: StepUpStack, handlers: Handlers) -> None:
    alice_token = await token_for(stack, "alice", "user:update")

    await assert_refused(stack, handlers, "/app/profile", alice_token, user="bob")
    await assert_refused(stack, handlers, "/app/delete-account", alice_token)
    status, _, check = await call(stack, "POST", "/stepup/check", user="bob", token=alice_token,
                                  body={"scope": "user:update"})
    assert status == 200 and check["isRequired"] is True

    # The same user in another session (another device) holds no grant of this one.
    other_session = await stack.service.tokens.mint(
        Principal("alice", "another-session"), ["user:update"], method="pin", ttl=600, single_use=False
    )
    await assert_refused(stack, handlers, "/app/profile", other_session.elevated_access_token)
    # Session ids are the application's: another user's session may carry the same one.
    same_session_id = await stack.service.tokens.mint(
        Principal("alice", stack.principal("bob").session_id), ["user:update"], method="pin", ttl=600, single_use=False
    )
    await assert_refused(stack, handlers, "/app/profile", same_session_id.elevated_access_token, user="bob")

    # A token for one scope is no token for a credential operation.
    credential_id = (await stack.service.list_credentials(stack.principal("alice")))[0].id
    status, _, body = await call(stack, "DELETE", f"/stepup/credentials/{credential_id}", token=alice_token)
    assert status == 401 and body["scope"] == "credential:unlink"
    assert len(await stack.service.list_credentials(stack.principal("alice"))) == 1

    # ...while alice, in her own session, for the scope, gets through.
    status, _, _ = await call(stack, "POST", "/app/profile", token=alice_token)
    assert status == 200 and handlers.calls == ["/app/profile"]


async def test_another_user_presenting_a_single_use_token_does_not_burn_it(
    stack: StepUpStack, handlers: Handlers
) -> None:
    token = await token_for(stack, "alice", "wallet:export")
    await assert_refused(stack, handlers, "/app/export-key", token, user="bob")
    await assert_refused(stack, handlers, "/app/delete-account", token)  # the wrong scope does not burn it either
    status, _, _ = await call(stack, "POST", "/app/export-key", token=token)
    assert status == 200
    await assert_refused(stack, handlers, "/app/export-key", token)


async def test_a_token_is_not_accepted_for_a_scope_it_was_not_verified_for(stack: StepUpStack) -> None:
    """A challenge begun for ``user:update`` cannot be verified into ``user:delete`` or wider."""
    status, _, start = await call(stack, "POST", "/stepup/challenges",
                                  body={"method": "pin", "requestedScopes": ["user:update"]})
    assert status == 201
    for scopes in (["user:delete"], ["user:update", "user:delete"], ["user:update", "wallet:export"]):
        status, _, body = await call(stack, "POST", "/stepup/verify", body={
            "method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN},
            "requestedScopes": scopes,
        })
        assert status == 422 and body["code"] == "invalid_scope", body
    status, _, issued = await call(stack, "POST", "/stepup/verify", body={
        "method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN},
        "requestedScopes": ["user:update", "user:update"],
    })
    assert status == 200 and issued["scopes"] == ["user:update"]


# --- forged and mangled tokens -------------------------------------------------------------------


def _forgeries(real: str) -> dict[str, str]:
    return {
        "bare prefix": "sut_",
        "well-formed, never issued": "sut_" + "A" * 43,
        "real token, one character more": real + "A",
        "real token, one character less": real[:-1],
        "real token, prefix upper-cased": "SUT_" + real[4:],
        "real token without its prefix": real[4:],
        "the hash the store keeps": hashlib.sha256(real.encode()).hexdigest(),
        "the stored key": "grant:" + hashlib.sha256(real.encode()).hexdigest(),
        "real token twice": real + "," + real,
        "very long": "sut_" + "A" * 7000,
        "real token padded to a long one": real + " " * 10 + "x" * 4000,
    }


@pytest.mark.parametrize("kind", list(_forgeries("sut_x")))
async def test_forged_and_mangled_tokens_are_refused(stack: StepUpStack, handlers: Handlers, kind: str) -> None:
    real = await token_for(stack, "alice", "user:update")
    await assert_refused(stack, handlers, "/app/profile", _forgeries(real)[kind])
    status, _, _ = await call(stack, "POST", "/app/profile", token=real)
    assert status == 200  # the real one still works: nothing above touched it


async def _raw_request(stack: StepUpStack, head: list[bytes], body: bytes = b"") -> tuple[int, bytes, bytes]:
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"\r\n".join([*head, b"Host: " + host.encode(), b"Connection: close",
                                   b"Content-Length: " + str(len(body)).encode()]) + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    header, _, payload = answer.partition(b"\r\n\r\n")
    return int(header.split(b" ")[1]), header, payload


async def test_a_token_header_that_is_not_utf8_is_refused_not_a_server_error(
    stack: StepUpStack, handlers: Handlers
) -> None:
    """Header bytes that are not UTF-8 (a proxy or attacker can send any) are just a wrong token."""
    auth = b"Authorization: Bearer " + session_token("alice").encode()
    for token in (b"sut_\xff\xfe", b"\xc3\x28", b"sut_" + bytes(range(0x80, 0xa0))):
        status, header, payload = await _raw_request(
            stack, [b"POST /app/profile HTTP/1.1", auth, b"X-Elevated-Access-Token: " + token]
        )
        assert status == 401, payload
        assert b"application/problem+json" in header and b"insufficient_user_authentication" in payload
        status, _, payload = await _raw_request(
            stack, [b"POST /stepup/check HTTP/1.1", auth, b"Content-Type: application/json",
                    b"X-Elevated-Access-Token: " + token], b'{"scope": "user:update"}'
        )
        assert status == 200 and b'"isRequired":true' in payload and b"check_failed" not in payload
    assert handlers.calls == []


async def test_tokens_anywhere_but_their_header_are_ignored(stack: StepUpStack, handlers: Handlers) -> None:
    token = await token_for(stack, "alice", "user:update")
    for name in ("elevatedAccessToken", "elevated_access_token", "token", "access_token", "X-Elevated-Access-Token"):
        await assert_refused(stack, handlers, "/app/profile", None, params={name: token})
    await assert_refused(stack, handlers, "/app/profile", None, headers={"Cookie": f"elevatedAccessToken={token}"})
    await assert_refused(stack, handlers, "/app/profile", None, headers={"X-Elevated-Access-Token-2": token})
    # As the bearer token it is no session either.
    status, _, body = await call(stack, "POST", "/app/profile", user=None, headers={"Authorization": f"Bearer {token}"})
    assert status == 401 and body["code"] == "unauthenticated"
    assert handlers.calls == []


# --- single use under concurrency ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_one_single_use_token_lets_exactly_one_of_many_concurrent_requests_through(
    handlers: Handlers, backend: str, tmp_path: Any
) -> None:
    url = f"sqlite:{tmp_path / 'stepup.sqlite3'}" if backend == "sqlite" else "memory:"
    methods = ThrowawayPlugin([PinVerifier(name="pin")])
    async with StepUpStack.start(plugins=[methods], config={"store": url}, setup_app=handlers.install) as stack:
        await enrol(stack, "alice")
        token = await token_for(stack, "alice", "wallet:export")
        results = await asyncio.gather(*[
            call(stack, "POST", "/app/export-key", token=token) for _ in range(40)
        ])
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [401] * 39, statuses
    assert handlers.calls == ["/app/export-key"]


async def test_one_single_use_unlink_token_deletes_exactly_one_credential_under_concurrency(
    stack: StepUpStack,
) -> None:
    """``credential:unlink`` made single-use by policy: two concurrent deletions of two different
    credentials with one token remove exactly one."""
    alice = stack.principal("alice")
    link = await token_for(stack, "alice", "credential:link")
    await enrol(stack, "alice", "code", token=link)
    ids = [c.id for c in await stack.service.list_credentials(alice)]
    assert len(ids) == 2
    token = await token_for(stack, "alice", "credential:unlink")
    results = await asyncio.gather(*[
        call(stack, "DELETE", f"/stepup/credentials/{cid}", token=token) for cid in ids * 5
    ])
    statuses = [status for status, _, _ in results]
    assert statuses.count(204) == 1 and set(statuses) <= {204, 401, 404}, statuses  # 404: already deleted
    assert len(await stack.service.list_credentials(alice)) == 1


# --- expiry at the boundary ------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "ttl"), [("/app/profile", 600.0), ("/app/export-key", 300.0)])
async def test_a_token_stops_working_exactly_at_its_expiry(
    stack: StepUpStack, handlers: Handlers, path: str, ttl: float
) -> None:
    scope = PROTECTED[path]
    token = await token_for(stack, "alice", scope)
    grant = await stack.service.tokens.peek(token, stack.principal("alice"), scope)
    assert grant is not None and grant.expires_at == stack.clock.now() + ttl
    stack.clock.current = grant.expires_at - 0.001
    status, _, check = await call(stack, "POST", "/stepup/check", body={"scope": scope}, token=token)
    assert status == 200 and check["isRequired"] is False
    if ttl == 600.0:
        status, _, _ = await call(stack, "POST", path, token=token)
        assert status == 200
    stack.clock.current = grant.expires_at
    await assert_refused(stack, handlers, path, token)
    status, _, check = await call(stack, "POST", "/stepup/check", body={"scope": scope}, token=token)
    assert check["isRequired"] is True


async def test_a_token_minted_for_a_session_does_not_survive_its_revocation(
    stack: StepUpStack, handlers: Handlers
) -> None:
    token = await token_for(stack, "alice", "user:update")
    bob_token = await token_for(stack, "bob", "user:update")
    status, _, revoked = await call(stack, "DELETE", "/stepup/grants", user="bob")
    assert status == 200 and revoked == {"revoked": 1}  # bob revokes his own, not alice's
    status, _, _ = await call(stack, "POST", "/app/profile", token=token)
    assert status == 200
    await assert_refused(stack, handlers, "/app/profile", bob_token, user="bob")
    status, _, revoked = await call(stack, "DELETE", "/stepup/grants")
    assert revoked == {"revoked": 1}
    await assert_refused(stack, handlers, "/app/profile", token)


async def test_a_verified_token_is_never_wider_than_the_service_says(stack: StepUpStack) -> None:
    """The service-level grant behind an HTTP token matches the answer the client got."""
    token = await token_for(stack, "alice", "user:update", "user:delete")
    grant = await stack.service.tokens.peek(token, stack.principal("alice"), "user:update")
    assert grant is not None and grant.scopes == ("user:delete", "user:update")
    assert grant.user_id == "alice" and grant.session_id == stack.principal("alice").session_id
    assert not grant.single_use
    issued = await stack.service.verify(
        stack.principal("alice"),
        VerifyRequest(method="pin", response={"code": PIN}, challenge_id=(await stack.service.begin(
            stack.principal("alice"), ChallengeRequest(method="pin", requested_scopes=("wallet:export",))
        )).challenge_id),
    )
    assert issued.single_use and issued.scopes == ("wallet:export",)


# --- refused presentations are audited --------------------------------------------------------------


def _events(stack: StepUpStack) -> ThrowawayPlugin:
    plugin = stack.pm.get_plugin("stack-plugin-0")
    assert isinstance(plugin, ThrowawayPlugin)
    return plugin


async def test_every_refused_token_presentation_is_audited_without_the_token(
    stack: StepUpStack, handlers: Handlers
) -> None:
    """A token presented by another user, in another session or for another scope (a stolen or
    leaked one, typically) leaves a ``grant_refused`` event with the reason and an id that names
    the token in its ``grant_issued`` event, but is neither the token nor its stored hash."""
    events = _events(stack)
    alice_token = await token_for(stack, "alice", "user:update")
    single = await token_for(stack, "alice", "wallet:export")
    other_session = await stack.service.tokens.mint(
        Principal("alice", "another-session"), ["user:update"], method="pin", ttl=600, single_use=False
    )
    short = await stack.service.tokens.mint(stack.principal("alice"), ["user:delete"], method="pin", ttl=5,
                                            single_use=False)
    assert (await call(stack, "POST", "/app/export-key", token=single))[0] == 200
    stack.clock.advance(10)
    before = len(events.events)

    attempts = [
        ("bob", "/app/profile", alice_token, "other_user"),
        ("alice", "/app/profile", other_session.elevated_access_token, "other_session"),
        ("alice", "/app/delete-account", alice_token, "scope_not_granted"),
        ("alice", "/app/delete-account", short.elevated_access_token, "expired"),
        ("alice", "/app/export-key", single, "unknown"),  # a used single-use token is gone
        ("alice", "/app/profile", "sut_" + "A" * 43, "unknown"),
        ("alice", "/app/profile", alice_token[:-1], "malformed"),
        ("alice", "/app/profile", "not-a-token", "malformed"),
    ]
    for user, path, token, _ in attempts:
        status, _, body = await call(stack, "POST", path, user=user, token=token)
        assert status == 401 and body["code"] == "insufficient_user_authentication"
    # A token-guarded stepup route audits the same way; a check, which uses nothing, does not.
    status, _, _ = await call(stack, "POST", "/stepup/enrollments", user="alice", token=alice_token,
                              body={"method": "code", "params": {"pin": PIN}})
    assert status == 401
    status, _, check = await call(stack, "POST", "/stepup/check", user="bob", token=alice_token,
                                  body={"scope": "user:update"})
    assert status == 200 and check["isRequired"] is True

    refused = events.of_type("grant_refused")
    assert [(e.user_id, e.reason, e.details["refusal"]) for e in refused] == [
        (user, "token_not_valid", refusal) for user, _, _, refusal in attempts
    ] + [("alice", "token_not_valid", "scope_not_granted")]
    assert [e.scopes for e in refused[:3]] == [("user:update",), ("user:update",), ("user:delete",)]
    issued_id = events.of_type("grant_issued")[0].details["tokenId"]  # alice_token's
    assert refused[0].details["tokenId"] == issued_id == refused[2].details["tokenId"]
    assert all(e.outcome == "failure" for e in refused)
    assert [e.details["tokenId"] for e in refused if e.details["refusal"] == "malformed"] == [None, None]
    # Neither the token, nor the hash the store keys it by, nor the key itself appears anywhere.
    written = repr(events.events[before:])
    for token in (alice_token, other_session.elevated_access_token, single, short.elevated_access_token):
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert token not in written and token[4:20] not in written and digest[:16] not in written
    assert handlers.calls == ["/app/export-key"]


async def test_no_token_and_a_valid_token_leave_no_refusal(stack: StepUpStack) -> None:
    events = _events(stack)
    token = await token_for(stack, "alice", "user:update")
    assert (await call(stack, "POST", "/app/profile"))[0] == 401
    assert (await call(stack, "POST", "/app/profile", token=token))[0] == 200
    assert events.of_type("grant_refused") == []
    used = events.of_type("grant_used")
    assert used[-1].details["tokenId"] == events.of_type("grant_issued")[-1].details["tokenId"]
