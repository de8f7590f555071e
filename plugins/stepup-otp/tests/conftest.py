"""Real receivers on loopback: an SMTP server (aiosmtpd) and an HTTP SMS gateway (aiohttp)."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stepup_otp import plugin as otp_plugin
from stepup_otp.client import Mailbox

from stepup_core.clock import ManualClock
from stepup_core.models import AuditEvent, Credential, CredentialFormat, Factor
from stepup_core.service import StepUpService
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.pytest_plugin import ServiceFactory, plugin_manager

LOOPBACK = "127.0.0.1"
CODE_IN_TEXT = re.compile(r"verification code is:\s+(\d{6})\b")
CODE_IN_HTML = re.compile(r">(\d{6})</p>")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (a mail server or gateway that is down)."""
    return free_port()


@attrs.frozen
class TlsMaterial:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A self-signed certificate for localhost and 127.0.0.1, made for this test run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stepup test relay")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file = folder / "relay.pem"
    key_file = folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsMaterial(cert_file=cert_file, key_file=key_file)


@attrs.define
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "message has no text/plain part"
        return str(part.get_content())  # type: ignore[attr-defined]

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, "message has no text/html part"
        return str(part.get_content())  # type: ignore[attr-defined]

    def code(self) -> str:
        """The code, read from both bodies; they must agree."""
        text_match = CODE_IN_TEXT.search(self.text())
        html_match = CODE_IN_HTML.search(self.html())
        assert text_match and html_match, "code not found in both bodies"
        assert text_match.group(1) == html_match.group(1)
        return text_match.group(1)


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.tls_sessions: list[bool] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        implicit_tls = server.transport.get_extra_info("ssl_object") is not None
        self.tls_sessions.append(session.ssl is not None or implicit_tls)
        return "250 Message accepted for delivery"


@attrs.define
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler
    controller: Controller

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.handler.messages


SmtpServerFactory = Callable[..., SmtpServer]


@pytest.fixture
def smtp_server_factory(tls_material: TlsMaterial) -> Iterator[SmtpServerFactory]:
    """Start aiosmtpd on a free loopback port: ``security`` is ``none``, ``starttls`` (required)
    or ``tls`` (implicit); ``credentials`` turns on AUTH with that one user."""
    started: list[Controller] = []

    def start(security: str = "none", credentials: tuple[str, str] | None = None) -> SmtpServer:
        handler = RecordingHandler()
        port = free_port()
        kwargs: dict[str, Any] = {}
        if security == "starttls":
            kwargs.update(tls_context=tls_material.server_context(), require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=tls_material.server_context())
        if credentials is not None:
            expected_user, expected_password = credentials

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login.decode() == expected_user
                    and data.password.decode() == expected_password
                )
                if ok:
                    handler.logins.append(expected_user)
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        controller = Controller(handler, hostname=LOOPBACK, port=port, **kwargs)
        controller.start()
        started.append(controller)
        return SmtpServer(host=LOOPBACK, port=port, handler=handler, controller=controller)

    yield start
    for controller in started:
        controller.stop()


@attrs.define
class SmsGateway:
    url: str
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    #: Status the gateway answers with.
    status: int = 202


@pytest.fixture
async def sms_gateway() -> AsyncIterator[SmsGateway]:
    """A local HTTP SMS gateway that records what it is sent and answers ``status``."""
    port = free_port()
    gateway = SmsGateway(url=f"http://{LOOPBACK}:{port}/v1/messages")

    async def receive(request: web.Request) -> web.Response:
        gateway.requests.append(
            {
                "headers": dict(request.headers),
                "content_type": request.content_type,
                "body": await request.json(),
            }
        )
        return web.json_response({"id": f"msg-{len(gateway.requests)}"}, status=gateway.status)

    app = web.Application()
    app.router.add_post("/v1/messages", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    yield gateway
    await runner.cleanup()


# --- a service with the otp plugin -------------------------------------------------------

SECRET_KEY = "b" * 64  # 32 bytes, hex


@attrs.define(eq=False)
class AppCredentials(ThrowawayPlugin):
    """The application: its ``stepup_user_credentials`` (the email or phone a user signed in
    with, added by ``give``); it also records audit events."""

    def give(
        self,
        user_id: str,
        credential_id: str,
        identifier: str,
        fmt: CredentialFormat = CredentialFormat.EMAIL,
        sign_in: bool = True,
    ) -> None:
        self.app_credentials.setdefault(user_id, []).append(
            Credential(
                id=credential_id,
                user_id=user_id,
                method="",
                format=fmt,
                factor=Factor.REAUTH,
                created_at=1_700_000_000.0,
                sign_in=sign_in,
                identifier=identifier,
                alias=identifier,
            )
        )


@attrs.define
class OtpWorld:
    """A StepUpService with stepup-otp, the application's credentials and a manual clock."""

    service: StepUpService
    clock: ManualClock
    app: AppCredentials
    pm: Any
    events: list[AuditEvent]


@pytest.fixture
def otp_world_factory(stepup_service_factory: ServiceFactory) -> Callable[..., Awaitable[OtpWorld]]:
    """``await otp_world_factory(otp_section, mailbox=None)`` builds a fresh service."""

    async def build(section: dict[str, Any] | None = None, mailbox: Mailbox | None = None) -> OtpWorld:
        app = AppCredentials()
        plugins: list[object] = [("otp", otp_plugin), ("test-app-credentials", app)]
        if mailbox is not None:
            plugins.append(("otp-mailbox", mailbox))
        pm = plugin_manager(plugins)
        clock = ManualClock()
        config = {"secret_key": SECRET_KEY, "app_name": "Acme", "plugins": {"otp": section or {}}}
        service = await stepup_service_factory(config, pm=pm, clock=clock)
        return OtpWorld(service=service, clock=clock, app=app, pm=pm, events=app.events)

    return build
