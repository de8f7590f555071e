"""No session token, elevated token, code or secret reaches a log line, whatever the request.

Malformed requests carrying known secrets are sent over a raw socket to an application that
mounts stepup (aiohttp's access log on) while the root logger captures every logger at DEBUG
through the handler ``stepup serve`` installs (:func:`stepup_core.redaction.configure_logging`).
A control run with a plain handler shows that the same requests do put those secrets into
log records: it is the redaction that keeps them out.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from stepup_core.redaction import RedactingFilter, configure_logging, redact
from stepup_core.server import build_app
from stepup_core.testing.methods import RedirectVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token


def _secret(label: str) -> str:
    return f"{label}Zq{secrets.token_urlsafe(18)}"


SESSION = session_token("alice")
FOLDED_FIRST = "sut_" + _secret("First")
FOLDED_SECOND = _secret("Second")
TOKEN = "sut_" + secrets.token_urlsafe(32)
COOKIE = _secret("Cookie")
STATE = _secret("State")
CODE = _secret("Code")
SECRETS = {
    "session": SESSION, "folded first half": FOLDED_FIRST, "folded second half": FOLDED_SECOND,
    "token": TOKEN, "cookie": COOKIE, "state": STATE, "code": CODE,
}


def _requests() -> list[bytes]:
    auth = b"Authorization: Bearer " + SESSION.encode()
    return [
        # A session token followed by a NUL.
        b"POST /stepup/check HTTP/1.1\r\n" + auth + b"\x00\r\n",
        # An elevated token continued on a folded line.
        b"POST /stepup/check HTTP/1.1\r\n" + auth + b"\r\nX-Elevated-Access-Token: " + FOLDED_FIRST.encode()
        + b"\r\n " + FOLDED_SECOND.encode() + b"\r\n",
        b"GET /stepup/credentials HTTP/1.1\r\nCookie: session=" + COOKIE.encode() + b"\x01\r\n",
        b"GET /stepup/credentials HTTP/1.1\r\nX-Elevated-Access-Token: " + TOKEN.encode() + b"\x7f\r\n",
        b"GET /stepup/credentials HTTP/1.1\r\n" + auth + b"\r\nX-Elevated-Access-Token: " + TOKEN.encode()
        + b"A" * 9000 + b"\r\n",
        # A callback whose query carries the provider's code and state, malformed and well-formed.
        b"GET /stepup/callback/redirect?state=" + STATE.encode() + b"&code=" + CODE.encode() + b"\x00 HTTP/1.1\r\n",
        b"GET /stepup/callback/redirect?state=" + STATE.encode() + b"&code=" + CODE.encode() + b" HTTP/1.1\r\n",
        # Well-formed requests carrying the session and a token.
        b"GET /stepup/credentials HTTP/1.1\r\n" + auth + b"\r\nX-Elevated-Access-Token: " + TOKEN.encode() + b"\r\n",
        b"GET /stepup/credentials?token=" + TOKEN.encode() + b" HTTP/1.1\r\n" + auth + b"\r\n",
    ]


async def _send(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Host: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """An application mounting stepup, served with aiohttp's access log on."""
    methods = ThrowawayPlugin([RedirectVerifier(provider_url=None)])
    async with StepUpStack.start(plugins=[methods]) as stack:
        app = build_app(stack.service, lambda request: asyncio.sleep(0, result=None))
        runner = web.AppRunner(app)  # access_log: aiohttp.access
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield runner.addresses[0][1]
        finally:
            await runner.cleanup()


async def _log_of(port: int, handler: logging.Handler, stream: io.StringIO) -> str:
    for request in _requests():
        answer = await _send(port, request)
        assert answer.startswith(b"HTTP/1."), answer[:100]
    await asyncio.sleep(0.05)
    handler.flush()
    return stream.getvalue()


def _leaks(text: str) -> list[str]:
    """The secrets (or any 10 characters in a row of one) that appear in ``text``."""
    found = []
    for name, secret in SECRETS.items():
        body = secret.removeprefix("sut_")
        if any(body[i:i + 10] in text for i in range(len(body) - 9)):
            found.append(name)
    return found


async def test_malformed_requests_leave_no_secret_in_any_log_line(
    port: int, root_logging: logging.Logger
) -> None:
    # Control: without redaction these requests do put secrets into log records.
    plain_stream = io.StringIO()
    plain = logging.StreamHandler(plain_stream)
    plain.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root_logging.addHandler(plain)
    root_logging.setLevel(logging.DEBUG)
    unredacted = await _log_of(port, plain, plain_stream)
    root_logging.removeHandler(plain)
    assert {"session", "folded second half", "code", "state"} <= set(_leaks(unredacted)), unredacted

    stream = io.StringIO()
    handler = configure_logging(logging.DEBUG, stream)
    logged = await _log_of(port, handler, stream)
    assert _leaks(logged) == [], logged
    # Every logger still speaks: the parser's errors and the access log are there, redacted.
    assert "aiohttp.server" in logged and "Error handling request" in logged
    assert "BadHttpMessage" in logged and "request data not logged" in logged
    assert "aiohttp.access" in logged and "GET /stepup/callback/redirect?state=[redacted]&code=[redacted]" in logged


def test_every_handler_gets_the_filter_and_redaction_is_stable(root_logging: logging.Logger) -> None:
    from stepup_core.redaction import install_redaction

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root_logging.addHandler(handler)
    install_redaction()
    install_redaction()
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    logging.getLogger("anything.at.all").error("headers %r and %s", {"Authorization": f"Bearer {SESSION}"}, TOKEN)
    try:
        raise ValueError(f"boom with {TOKEN} and Cookie: session={COOKIE}")
    except ValueError:
        logging.getLogger("other").exception("failed")
    handler.flush()
    assert _leaks(stream.getvalue()) == [], stream.getvalue()
    assert "ValueError: boom with sut_[redacted]" in stream.getvalue()
    once = redact(f"Authorization: Bearer {SESSION} {TOKEN} b'{COOKIE}' ?code={CODE}&x=1")
    assert redact(once) == once and _leaks(once) == []
    assert once.endswith("?code=[redacted]&x=1")
