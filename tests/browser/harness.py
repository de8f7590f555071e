"""A stepup server with every method, and the real parties around it, for tests in Chromium.

:class:`Site` runs one aiohttp application on ``http://localhost:<port>`` (WebAuthn needs a
domain, and ``localhost`` is a secure context): stepup mounted under ``/stepup``, a blank test
page at ``/`` (served with a Content-Security-Policy that forbids inline code and ``eval``: what
runs there runs under a strict policy), and the application's protected routes, which record the
elevated tokens they receive. Around it: an SMTP server (aiosmtpd) that receives the one-time
codes, and an OpenID Connect provider (stepup-social's loopback provider), both on loopback.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any

import attrs
import pyotp
from aiohttp import web
from aiosmtpd.controller import Controller

from stepup_core.config import config_from_mapping
from stepup_core.identify import StaticTokenIdentify
from stepup_core.models import Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.server import build_app, principal_from, requires_scope, serve_app
from stepup_core.service import StepUpService

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; img-src 'self' data:; style-src 'self'; "
    "connect-src 'self' {extra}; base-uri 'none'; form-action 'none'"
)
PAGE = "<!doctype html><html lang=en><head><meta charset=utf-8><title>stepup test page</title></head><body></body></html>"
#: Protected routes of the test application, by path: the scope each needs.
PROTECTED = {"/app/wallet/export": "wallet:export", "/app/profile": "user:update"}
CODE = re.compile(r"\b(\d{6})\b")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_token(user: str) -> str:
    return f"{user}-browser-session-token".ljust(32, "0")


@attrs.define
class ShiftedClock:
    """Real time plus an offset a test moves forward (a TOTP app's next code, for one)."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@attrs.define
class Mailbox:
    """What the SMTP server received."""

    messages: list[email.message.EmailMessage] = attrs.field(factory=list)
    arrived: asyncio.Event | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def codes(self) -> list[email.message.EmailMessage]:
        """The messages that carry a code (not the security notices the server also sends)."""
        return [m for m in self.messages if "verification code" in str(m["Subject"]).lower()]

    async def next_code(self, to: str, seen: int, timeout: float = 10.0) -> str:
        """The code in the first code message to ``to`` after the first ``seen`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.codes()[seen:]:
                if to in str(message["To"]):
                    body = message.get_body(preferencelist=("plain",))
                    found = CODE.search(body.get_content() if body is not None else "")
                    if found:
                        return found.group(1)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no code reached {to} within {timeout} s")


@attrs.define
class Site:
    service: StepUpService
    clock: ShiftedClock
    base_url: str
    mailbox: Mailbox
    #: (path, token header) of every call a protected route let through.
    calls: list[tuple[str, str | None]]
    #: Every token header a protected route saw, let through or not.
    seen_tokens: list[str]

    def principal(self, user: str) -> Principal:
        return Principal(user, f"{user}-session")

    def totp_code(self, secret: str) -> str:
        return pyotp.TOTP(secret).at(self.clock.now())

    async def open(self, page: Any, user: str = "alice", prompt: str | None = None, extra: str = "") -> None:
        """Load the test page and create ``window.stepUp`` for ``user``.

        ``prompt``: the body of the page's prompt function (``request`` in scope); default none.
        """
        await page.goto(self.base_url + "/")
        await page.evaluate(
            """async ([token, hasPrompt, extra]) => {
                const { createStepUp, StepUpError } = await import("/stepup/static/stepup.js");
                window.StepUpError = StepUpError;
                window.events = [];
                const options = { headers: { Authorization: "Bearer " + token }, ...(extra ? JSON.parse(extra) : {}) };
                if (hasPrompt) options.prompt = (request) => window.promptImpl(request);
                window.stepUp = createStepUp(options);
                window.stepUp.subscribe((state) => window.events.push({
                    isLoading: state.isLoading, error: state.error && state.error.code }));
            }""",
            [session_token(user), prompt is not None, extra],
        )
        if prompt is not None:
            await page.evaluate(f"() => {{ window.promptImpl = async (request) => {{ {prompt} }}; }}")


def _pm() -> Any:
    import stepup_example.plugin
    import stepup_otp.plugin
    import stepup_passkey.plugin
    import stepup_recovery.plugin
    import stepup_social.plugin
    import stepup_totp.plugin
    import stepup_wallet.plugin

    pm = get_plugin_manager(load_entrypoints=False)
    for plugin in (
        stepup_otp.plugin,
        stepup_totp.plugin,
        stepup_passkey.plugin,
        stepup_wallet.plugin,
        stepup_social.plugin,
        stepup_recovery.plugin,
        stepup_example.plugin,
    ):
        pm.register(plugin, name=plugin.__name__.split(".")[0])
    return pm


def site_config(origin: str, smtp_port: int, provider: Mapping[str, Any] | None, **server: Any) -> dict[str, Any]:
    host = origin.split("//", 1)[1]
    plugins: dict[str, Any] = {
        "passkey": {"rp_id": "localhost", "rp_name": "stepup test", "origins": [origin]},
        "wallet": {"domain": host, "uri": origin},
        "otp": {"smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "stepup@example.com", "security": "none"}},
    }
    if provider is not None:
        plugins["social"] = {"providers": {"idp": dict(provider)}}
    return {
        "store": "memory:",
        "secret_key": secrets.token_hex(32),
        "app_name": "stepup browser test",
        "server": {"public_url": origin, **server},
        "plugins": plugins,
    }


@attrs.define
class SiteRunner:
    """Starts and stops a :class:`Site` (and its mail server)."""

    users: tuple[str, ...] = ("alice", "bob")
    provider: Any = None
    server: dict[str, Any] = attrs.field(factory=dict)
    page_connect: str = ""
    #: Extra files the site serves (path: JavaScript), for bundles built by a test.
    files: dict[str, bytes] = attrs.field(factory=dict)
    #: Configuration merged over the site's (``{"limits": {...}, "plugins": {"otp": {...}}}``).
    overrides: dict[str, Any] = attrs.field(factory=dict)
    _stack: list[Any] = attrs.field(factory=list)

    async def __aenter__(self) -> Site:
        mailbox = Mailbox()
        smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
        smtp.start()
        self._stack.append(smtp.stop)
        port = free_port()
        origin = f"http://localhost:{port}"
        clock = ShiftedClock()
        config = config_from_mapping(
            merged(
                site_config(origin, smtp.port, self.provider.provider_config() if self.provider else None, **self.server),
                self.overrides,
            )
        )
        service = await StepUpService.create(config, pm=_pm(), clock=clock)
        identify = StaticTokenIdentify.from_mapping(
            {session_token(u): Principal(u, f"{u}-session") for u in self.users}
        )
        app = build_app(service, identify)
        calls: list[tuple[str, str | None]] = []
        seen: list[str] = []

        @web.middleware
        async def record_tokens(request: web.Request, handler: Any) -> web.StreamResponse:
            token = request.headers.get("X-Elevated-Access-Token")
            if token and request.path in PROTECTED:
                seen.append(token)
            return await handler(request)

        app.middlewares.append(record_tokens)
        csp = PAGE_CSP.format(extra=self.page_connect).strip()

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": csp})

        async def no_icon(request: web.Request) -> web.Response:
            return web.Response(status=204)

        app.router.add_get("/", page)
        app.router.add_get("/favicon.ico", no_icon)
        for path, body in self.files.items():
            app.router.add_get(path, _file(body))
        for path, scope in PROTECTED.items():
            app.router.add_post(path, _protected(path, scope, calls))
        runner = serve_app(app, host="127.0.0.1", port=port)
        await runner.__aenter__()
        self._stack.append(runner)
        self._stack.append(service)
        return Site(service, clock, origin, mailbox, calls, seen)

    async def __aexit__(self, *exc: object) -> None:
        for item in reversed(self._stack):
            if isinstance(item, StepUpService):
                await item.close()
            elif hasattr(item, "__aexit__"):
                await item.__aexit__(None, None, None)
            else:
                item()
        self._stack.clear()


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, tables deeply."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def _file(body: bytes) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/javascript")

    return handler


def _protected(path: str, scope: str, calls: list[tuple[str, str | None]]) -> Any:
    @requires_scope(scope)
    async def handler(request: web.Request) -> web.Response:
        calls.append((path, request.headers.get("X-Elevated-Access-Token")))
        principal = principal_from(request)
        return web.json_response({"done": path, "user": principal and principal.user_id})

    return handler
