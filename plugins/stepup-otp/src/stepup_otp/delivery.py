"""Real code senders: SMTP (aiosmtplib) for email and an HTTP SMS gateway (aiohttp).

The same two transports carry security notices (``stepup_deliver_message``): a notice is built
by the core's templates and sent over the relay or gateway configured for codes.

Both raise :class:`~stepup_core.errors.DeliveryFailed` when the message could not be handed
over, with a message that names the channel and the cause but never the code.
aiosmtplib and aiohttp are imported when a message is sent, not when the plugin loads.
"""

from __future__ import annotations

import asyncio
import html
import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from stepup_core.errors import DeliveryFailed
from stepup_core.models import CodeDelivery, Message

from .addresses import mask_email, mask_phone_number
from .settings import SmsGatewaySettings, SmtpSettings

log = logging.getLogger("stepup.otp")

PURPOSE_LINES = {
    "enrollment": "Use it to confirm that this address belongs to you.",
    "stepUp": "Use it to confirm that it is you before a sensitive action.",
}


def _minutes(seconds: float) -> int:
    return max(1, round(seconds / 60))


def _purpose_line(purpose: str) -> str:
    return PURPOSE_LINES.get(purpose, PURPOSE_LINES["stepUp"])


def _new_email(settings: SmtpSettings, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    sender_domain = parseaddr(settings.sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=sender_domain)
    message["Auto-Submitted"] = "auto-generated"
    return message


def build_notice_email(notice: Message, settings: SmtpSettings) -> EmailMessage:
    """A security notice: its rendered text, and its HTML as the alternative."""
    message = _new_email(settings, notice.address, notice.subject)
    message.set_content(notice.text)
    if notice.html:
        message.add_alternative(notice.html, subtype="html")
    return message


def build_email(delivery: CodeDelivery, settings: SmtpSettings, code_ttl: float) -> EmailMessage:
    """The message for one code: a plain-text body and an HTML alternative."""
    app = delivery.app_name
    minutes = _minutes(code_ttl)
    message = _new_email(settings, delivery.address, settings.subject.replace("{app}", app))
    text = (
        f"Your {app} verification code is:\n\n"
        f"    {delivery.code}\n\n"
        f"{_purpose_line(delivery.purpose)} The code expires in {minutes} minutes.\n\n"
        "If you did not ask for this code, ignore this message and do not share the code "
        "with anyone.\n"
    )
    message.set_content(text)
    app_html = html.escape(app)
    code_html = html.escape(delivery.code)
    message.add_alternative(
        "<!DOCTYPE html>\n"
        '<html><body style="font-family: sans-serif;">\n'
        f"<p>Your {app_html} verification code is:</p>\n"
        '<p style="font-size: 28px; font-weight: bold; letter-spacing: 6px;">'
        f"{code_html}</p>\n"
        f"<p>{html.escape(_purpose_line(delivery.purpose))} "
        f"The code expires in {minutes} minutes.</p>\n"
        "<p>If you did not ask for this code, ignore this message and do not share the code "
        "with anyone.</p>\n"
        "</body></html>\n",
        subtype="html",
    )
    return message


class SmtpSender:
    """Sends email codes through an SMTP relay (``[plugins.otp.smtp]``)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings, code_ttl: float) -> None:
        self.settings = settings
        self.code_ttl = code_ttl

    async def send(self, delivery: CodeDelivery) -> None:
        await self.send_email(build_email(delivery, self.settings, self.code_ttl), delivery.address, "the code")

    async def send_email(self, message: EmailMessage, address: str, what: str) -> None:
        import aiosmtplib

        settings = self.settings
        destination = mask_email(address)
        try:
            await aiosmtplib.send(
                message,
                sender=parseaddr(settings.sender)[1],
                recipients=[address],
                hostname=settings.host,
                port=settings.effective_port,
                username=settings.username,
                password=settings.password,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                validate_certs=settings.validate_certs,
                cert_bundle=settings.tls_ca_file,
                timeout=settings.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            log.warning(
                "email (%s) to %s via %s:%s failed: %s",
                what,
                destination,
                settings.host,
                settings.effective_port,
                _describe(exc),
            )
            raise DeliveryFailed(
                f"could not send {what} by email to {destination}: the mail server "
                f"{settings.host}:{settings.effective_port} refused or could not be reached "
                f"({_describe(exc)})",
                channel="email",
            ) from None


class SmtpMessageSender:
    """Sends security notices through the SMTP relay that sends codes."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.smtp = SmtpSender(settings, code_ttl=0.0)

    async def send(self, message: Message) -> None:
        await self.smtp.send_email(build_notice_email(message, self.smtp.settings), message.address, "the notice")


class SmsGatewaySender:
    """Sends SMS codes by posting JSON to an HTTP gateway (``[plugins.otp.sms_gateway]``)."""

    name = "sms_gateway"

    def __init__(self, settings: SmsGatewaySettings) -> None:
        self.settings = settings

    async def send(self, delivery: CodeDelivery) -> None:
        body = self.settings.render_body(to=delivery.address, code=delivery.code, app=delivery.app_name)
        await self.post(body, delivery.address, "the code")

    async def post(self, body: object, address: str, what: str) -> None:
        import aiohttp

        settings = self.settings
        destination = mask_phone_number(address)
        headers = {"Accept": "application/json"}
        if settings.auth_header is not None:
            headers[settings.auth_header.name] = settings.auth_header.value
        timeout = aiohttp.ClientTimeout(total=settings.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                settings.url, json=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("SMS (%s) to %s failed: %s", what, destination, _describe(exc))
            raise DeliveryFailed(
                f"could not send {what} by SMS to {destination}: the SMS gateway could not be "
                f"reached ({_describe(exc)})",
                channel="sms",
            ) from None
        if not 200 <= status < 300:
            log.warning("SMS (%s) to %s failed: gateway answered HTTP %s", what, destination, status)
            raise DeliveryFailed(
                f"could not send {what} by SMS to {destination}: the SMS gateway answered HTTP {status}",
                channel="sms",
                gatewayStatus=status,
            )


class SmsGatewayMessageSender:
    """Sends security notices (their short ``sms`` text) through the SMS gateway that sends codes."""

    name = "sms_gateway"

    def __init__(self, settings: SmsGatewaySettings) -> None:
        self.gateway = SmsGatewaySender(settings)

    async def send(self, message: Message) -> None:
        settings = self.gateway.settings
        body = settings.render_notice_body(to=message.address, text=message.text, app=message.app_name)
        await self.gateway.post(body, message.address, "the notice")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
