"""``stepup demo --web``: a small web application on loopback that steps up with the built-in prompt.

A person signs in as a demo user with MFA (an authenticator app and recovery codes) or without
(an email address, a wallet and an account at a sign-in provider), then presses buttons that
need a step-up: "Export wallet key" (``wallet:export``, a single-use token: every export asks),
"Update profile" (``user:update``, time-bound: asked once for ten minutes), "Link a new device"
(a passkey, behind ``credential:link``) and "Show my devices". The page loads ``stepup.js`` and
``prompt.js`` from the stepup server mounted in the application, as any application would.

The authenticators need no hardware where that can be:

- the authenticator app's current code is shown on the page (the demo holds its secret);
- the recovery codes are shown on the page;
- email codes go through a sender that prints them to the console, as the built-in console
  sender does, and the page shows them in a demo inbox;
- a demo wallet lives in the page: an EIP-1193 provider that asks the person to approve each
  signature and has the demo server sign with its throwaway key;
- the sign-in provider is a small OpenID Connect provider on loopback (stepup-social's
  ``LoopbackProvider``) that signs the demo user in at once;
- passkeys use the browser's own authenticator (or the DevTools WebAuthn panel's virtual one).

Each sign-in makes a fresh user, so limits and lockouts of one visit never carry over. Everything
lives in memory and in a temporary SQLite file, gone when the demo stops. Development only: the
secrets it shows would never be shown by a real application.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from importlib.resources import files
from typing import Any

import attrs
from aiohttp import web

from ..default_plugins.console_delivery import ConsoleSender
from ..hookspecs import hookimpl
from ..models import (
    CodeDelivery,
    Credential,
    CredentialFormat,
    EnrollmentCompletion,
    EnrollmentRequest,
    Factor,
    Principal,
)

COOKIE = "stepup_demo"
ASSETS = {
    "/": ("index.html", "text/html"),
    "/demo.js": ("demo.js", "text/javascript"),
    "/demo.css": ("demo.css", "text/css"),
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
USERS = {
    "alice": {"name": "Alice", "mfa": True, "email": "alice@demo.test"},
    "bob": {"name": "Bob", "mfa": False, "email": "bob@demo.test"},
}
PROVIDER = "demo"
PROVIDER_NAME = "Demo ID"
INBOX_SIZE = 5


@attrs.define
class DemoUser:
    kind: str
    user_id: str
    session_id: str
    name: str
    mfa: bool
    email: str
    signed_in_at: float
    totp_secret: str | None = None
    recovery_codes: list[str] = attrs.field(factory=list)

    @property
    def principal(self) -> Principal:
        return Principal(self.user_id, self.session_id, sign_in_credential_id=f"{self.user_id}-email")


@attrs.define
class Letter:
    user_id: str
    channel: str
    to: str
    code: str
    at: float


@attrs.define
class OutboxSender:
    """Prints each code as the console sender does, and keeps it for the page's demo inbox."""

    outbox: list[Letter]
    name: str = "demo-console"

    async def send(self, delivery: CodeDelivery) -> None:
        await ConsoleSender().send(delivery)
        letter = Letter(delivery.user_id or "", delivery.channel, delivery.address, delivery.code, time.time())
        self.outbox.append(letter)


@attrs.define
class WebDemo:
    """The demo application: its users, its demo authenticators and the hooks it answers."""

    origin: str
    users: dict[str, DemoUser] = attrs.field(factory=dict)
    outbox: list[Letter] = attrs.field(factory=list)
    wallet: Any = None  # eth_account LocalAccount, when stepup-wallet is installed
    provider: Any = None  # stepup_social.testing.LoopbackProvider, when stepup-social is installed
    service: Any = None

    # --- hooks: what the application knows, where codes go --------------------------------

    @hookimpl
    def stepup_user_credentials(self, principal: Principal) -> Iterable[Credential]:
        user = next((u for u in self.users.values() if u.user_id == principal.user_id), None)
        if user is None:
            return []
        made = user.signed_in_at
        found = [
            Credential(
                id=f"{user.user_id}-email",
                user_id=user.user_id,
                method="",
                format=CredentialFormat.EMAIL,
                factor=Factor.REAUTH,
                created_at=made,
                alias=_mask(user.email),
                sign_in=True,
                identifier=user.email,
            )
        ]
        if not user.mfa and self.wallet is not None:
            found.append(
                Credential(
                    id=f"{user.user_id}-wallet",
                    user_id=user.user_id,
                    method="",
                    format=CredentialFormat.BLOCKCHAIN,
                    factor=Factor.REAUTH,
                    created_at=made,
                    type="eip155:1",
                    alias=f"{self.wallet.address[:6]}…{self.wallet.address[-4:]}",
                    identifier=self.wallet.address,
                    data={"walletProvider": "external"},
                )
            )
        if not user.mfa and self.provider is not None:
            from stepup_social.identity import subject_identifier

            found.append(
                Credential(
                    id=f"{user.user_id}-social",
                    user_id=user.user_id,
                    method="",
                    format=CredentialFormat.OAUTH,
                    factor=Factor.REAUTH,
                    created_at=made,
                    type=PROVIDER,
                    alias=PROVIDER_NAME,
                    identifier=subject_identifier(self.provider.issuer, self.provider.subject),
                    data={"public": {"provider": PROVIDER, "providerName": PROVIDER_NAME}},
                )
            )
        return found

    @hookimpl
    def stepup_deliver_code(self, delivery: CodeDelivery, config: Any) -> OutboxSender:
        return OutboxSender(self.outbox)

    # --- users ------------------------------------------------------------------------------

    async def sign_in(self, kind: str) -> tuple[str, DemoUser]:
        spec = USERS[kind]
        user_id = f"{kind}-{secrets.token_hex(4)}"
        user = DemoUser(
            kind=kind,
            user_id=user_id,
            session_id=f"web-{secrets.token_hex(8)}",
            name=str(spec["name"]),
            mfa=bool(spec["mfa"]),
            email=str(spec["email"]),
            signed_in_at=self.service.clock.now(),
        )
        token = secrets.token_urlsafe(32)
        self.users[token] = user
        if user.mfa:
            await self._enrol_mfa(user)
        return token, user

    async def _enrol_mfa(self, user: DemoUser) -> None:
        """The MFA user's authenticator app and recovery codes, enrolled through the service as
        the application's own setup: no person to ask, so the application mints the
        ``credential:link`` token itself for a setup session and uses it at once."""
        service = self.service
        setup = Principal(user.user_id, f"setup-{secrets.token_hex(4)}")
        link = await service.tokens.mint(setup, ["credential:link"], method="demo-setup", ttl=60, single_use=False)
        token = link.elevated_access_token
        if "totp" in service.verifiers:
            import pyotp

            start = await service.begin_enrollment(
                setup, EnrollmentRequest("totp", {"accountName": user.email}, alias="Demo authenticator app"), token
            )
            secret = str(start.data["secret"])
            # The code of the step before: the current one stays fresh for the person's first step-up.
            code = pyotp.TOTP(secret).at(service.clock.now() - 30)
            await service.complete_enrollment(setup, start.enrollment_id, EnrollmentCompletion({"code": code}), token)
            user.totp_secret = secret
        if "recovery" in service.verifiers:
            start = await service.begin_enrollment(setup, EnrollmentRequest("recovery", {}), token)
            user.recovery_codes = [str(c) for c in start.data.get("codes", [])]
        await service.tokens.revoke_session(user.user_id, setup.session_id)

    async def identify(self, request: web.Request) -> Principal | None:
        user = self.users.get(request.cookies.get(COOKIE, ""))
        return user.principal if user else None

    def user_of(self, request: web.Request) -> DemoUser | None:
        return self.users.get(request.cookies.get(COOKIE, ""))

    def state(self, user: DemoUser | None) -> dict[str, Any]:
        """What the page shows: who is signed in and the demo authenticators' current state."""
        if user is None:
            return {"signedIn": False, "users": {k: {"name": v["name"], "mfa": v["mfa"]} for k, v in USERS.items()}}
        now = self.service.clock.now()
        totp = None
        if user.totp_secret:
            import pyotp

            app = pyotp.TOTP(user.totp_secret)
            totp = {"code": app.at(now), "secondsLeft": math.ceil(app.interval - now % app.interval)}
        inbox = [
            {"to": letter.to, "code": letter.code, "channel": letter.channel, "at": letter.at}
            for letter in self.outbox
            if letter.user_id == user.user_id
        ][-INBOX_SIZE:]
        return {
            "signedIn": True,
            "name": user.name,
            "userId": user.user_id,
            "mfa": user.mfa,
            "email": user.email,
            "totp": totp,
            "recoveryCodes": user.recovery_codes,
            "inbox": list(reversed(inbox)),
            "wallet": {"address": self.wallet.address} if self.wallet is not None and not user.mfa else None,
            "provider": PROVIDER_NAME if self.provider is not None and not user.mfa else None,
            "methods": sorted(self.service.verifiers),
        }


def _mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# --- the application ---------------------------------------------------------------------------


def _asset(name: str, content_type: str) -> Any:
    body = (files("stepup_core.webdemo") / name).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if content_type == "text/html":
            headers["Content-Security-Policy"] = PAGE_CSP
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return handler


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="malformed JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="a JSON object is expected")
    return body


def build_demo_app(demo: WebDemo) -> web.Application:
    """The demo application with stepup mounted under ``/stepup``."""
    from ..server import mount, principal_from, requires_scope

    app = web.Application()
    mount(app, demo.service, demo.identify)
    for path, (name, content_type) in ASSETS.items():
        app.router.add_get(path, _asset(name, content_type))

    async def me(request: web.Request) -> web.Response:
        return web.json_response(demo.state(demo.user_of(request)), headers={"Cache-Control": "no-store"})

    async def sign_in(request: web.Request) -> web.Response:
        kind = (await _json_body(request)).get("user")
        if kind not in USERS:
            raise web.HTTPBadRequest(text=f"user must be one of {', '.join(USERS)}")
        token, user = await demo.sign_in(kind)
        answer = web.json_response(demo.state(user))
        answer.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return answer

    async def sign_out(request: web.Request) -> web.Response:
        await _json_body(request)
        user = demo.users.pop(request.cookies.get(COOKIE, ""), None)
        if user is not None:
            await demo.service.tokens.revoke_session(user.user_id, user.session_id)
        answer = web.json_response(demo.state(None))
        answer.del_cookie(COOKIE, path="/")
        return answer

    async def wallet_sign(request: web.Request) -> web.Response:
        """The demo wallet's key signs a sign-in message for this site, for the signed-in user only."""
        user = demo.user_of(request)
        if user is None or demo.wallet is None or user.mfa:
            raise web.HTTPForbidden(text="sign in as the demo user with a wallet first")
        message = (await _json_body(request)).get("message")
        host = demo.origin.split("//", 1)[1]
        if not isinstance(message, str) or not message.startswith(f"{host} wants you to sign in"):
            raise web.HTTPBadRequest(text="the demo wallet signs only sign-in messages for this site (EIP-4361)")
        from eth_account.messages import encode_defunct

        signature = demo.wallet.sign_message(encode_defunct(text=message)).signature
        return web.json_response({"signature": "0x" + bytes(signature).hex()})

    @requires_scope("wallet:export")
    async def export_key(request: web.Request) -> web.Response:
        principal = principal_from(request)
        return web.json_response(
            {
                "exported": True,
                "user": principal and principal.user_id,
                "key": "0x" + secrets.token_hex(32),
                "note": "a made-up key: the demo holds no real wallet",
            }
        )

    @requires_scope("user:update")
    async def update_profile(request: web.Request) -> web.Response:
        principal = principal_from(request)
        return web.json_response({"updated": True, "user": principal and principal.user_id, "at": time.time()})

    app.router.add_get("/demo/me", me)
    app.router.add_post("/demo/sign-in", sign_in)
    app.router.add_post("/demo/sign-out", sign_out)
    app.router.add_post("/demo/wallet/sign", wallet_sign)
    app.router.add_post("/demo/wallet/export", export_key)
    app.router.add_post("/demo/profile", update_profile)
    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_demo(host: str = "127.0.0.1", port: int = 0, *, pm: Any = None) -> AsyncIterator[tuple[str, WebDemo]]:
    """Start the web demo; yields its address (``http://localhost:<port>/``) and the demo."""
    from ..config import config_from_mapping
    from ..plugins import get_plugin_manager
    from ..server import serve_app
    from ..service import StepUpService
    from ..startup import installed_plugin_names

    port = port or free_port(host)
    origin = f"http://localhost:{port}"
    demo = WebDemo(origin)
    pm = pm or get_plugin_manager()
    pm.register(demo, name="stepup-webdemo")
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="stepup-webdemo-"))
            plugins: dict[str, Any] = {
                "passkey": {"rp_id": "localhost", "rp_name": "stepup web demo", "origins": [origin]},
                "wallet": {"domain": f"localhost:{port}", "uri": origin},
            }
            with contextlib.suppress(ImportError):
                from eth_account import Account

                demo.wallet = Account.create()
            with contextlib.suppress(ImportError):
                from stepup_social.testing import LoopbackProvider

                demo.provider = await LoopbackProvider(subject="demo-user").start()
                plugins["social"] = {"providers": {PROVIDER: demo.provider.provider_config(display_name=PROVIDER_NAME)}}
            # Tables only for the plugins installed here: a table no plugin reads stops the start.
            installed = installed_plugin_names(pm)
            plugins = {name: table for name, table in plugins.items() if name in installed}
            try:
                config = config_from_mapping(
                    {
                        "store": f"sqlite:{tmp}/demo.sqlite3",
                        "secret_key": secrets.token_hex(32),
                        "app_name": "stepup web demo",
                        "server": {"public_url": origin},
                        "plugins": plugins,
                    }
                )
                demo.service = await StepUpService.create(config, pm=pm)
                try:
                    async with serve_app(build_demo_app(demo), host=host, port=port):
                        yield origin + "/", demo
                finally:
                    await demo.service.close()
            finally:
                if demo.provider is not None:
                    await demo.provider.close()
    finally:
        pm.unregister(name="stepup-webdemo")
