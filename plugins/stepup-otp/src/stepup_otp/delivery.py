"""Real code senders: SMTP (aiosmtplib) for email and an HTTP SMS gateway (aiohttp).

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
from stepup_core.models import CodeDelivery

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


def build_email(delivery: CodeDelivery, settings: SmtpSettings, code_ttl: float) -> EmailMessage:
    """The message for one code: a plain-text body and an HTML alternative."""
    app = delivery.app_name
    minutes = _minutes(code_ttl)
    message = EmailMessage()
    message["Subject"] = settings.subject.replace("{app}", app)
    message["From"] = settings.sender
    message["To"] = delivery.address
    message["Date"] = formatdate(localtime=False)
    sender_domain = parseaddr(settings.sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=sender_domain)
    message["Auto-Submitted"] = "auto-generated"
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
        import aiosmtplib

        settings = self.settings
        destination = mask_email(delivery.address)
        message = build_email(delivery, settings, self.code_ttl)
        try:
            await aiosmtplib.send(
                message,
                sender=parseaddr(settings.sender)[1],
                recipients=[delivery.address],
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
                "email code to %s via %s:%s failed: %s",
                destination,
                settings.host,
                settings.effective_port,
                _describe(exc),
            )
            raise DeliveryFailed(
                f"could not send the code by email to {destination}: the mail server "
                f"{settings.host}:{settings.effective_port} refused or could not be reached "
                f"({_describe(exc)})",
                channel="email",
            ) from None


class SmsGatewaySender:
    """Sends SMS codes by posting JSON to an HTTP gateway (``[plugins.otp.sms_gateway]``)."""

    name = "sms_gateway"

    def __init__(self, settings: SmsGatewaySettings) -> None:
        self.settings = settings

    async def send(self, delivery: CodeDelivery) -> None:
        import aiohttp

        settings = self.settings
        destination = mask_phone_number(delivery.address)
        body = settings.render_body(to=delivery.address, code=delivery.code, app=delivery.app_name)
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
            log.warning("SMS code to %s failed: %s", destination, _describe(exc))
            raise DeliveryFailed(
                f"could not send the code by SMS to {destination}: the SMS gateway could not be "
                f"reached ({_describe(exc)})",
                channel="sms",
            ) from None
        if not 200 <= status < 300:
            log.warning("SMS code to %s failed: gateway answered HTTP %s", destination, status)
            raise DeliveryFailed(
                f"could not send the code by SMS to {destination}: the SMS gateway answered HTTP {status}",
                channel="sms",
                gatewayStatus=status,
            )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
