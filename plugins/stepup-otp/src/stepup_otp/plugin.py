"""stepup hook implementations for ``otp``. Only cheap imports here: aiosmtplib and aiohttp
load when a code is first sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stepup_core import hookimpl
from stepup_core.config import StepUpConfig
from stepup_core.hookspecs import CodeSender, MessageSender
from stepup_core.models import CodeDelivery, Message

from .settings import load_settings

if TYPE_CHECKING:
    from stepup_core.client.method import ClientMethod
    from stepup_core.verifier import Verifier


@hookimpl
def stepup_register_verifiers(register: Callable[[Verifier], None], config: StepUpConfig) -> None:
    from .verifier import make_verifier

    register(make_verifier(load_settings(config)))


@hookimpl
def stepup_register_client_methods(register: Callable[[ClientMethod], None]) -> None:
    from .client import OtpClientMethod

    register(OtpClientMethod())


@hookimpl
def stepup_deliver_code(delivery: CodeDelivery, config: StepUpConfig) -> CodeSender | None:
    """SMTP for ``email`` when ``[plugins.otp.smtp]`` is set, the SMS gateway for ``sms`` when
    ``[plugins.otp.sms_gateway]`` is set; otherwise decline (the console fallback answers)."""
    settings = load_settings(config)
    if delivery.channel == "email" and settings.smtp is not None:
        from .delivery import SmtpSender

        return SmtpSender(settings.smtp, settings.code_ttl)
    if delivery.channel == "sms" and settings.sms_gateway is not None:
        from .delivery import SmsGatewaySender

        return SmsGatewaySender(settings.sms_gateway)
    return None


@hookimpl
def stepup_deliver_message(message: Message, config: StepUpConfig) -> MessageSender | None:
    """Security notices over the same SMTP relay and SMS gateway as codes; decline otherwise."""
    settings = load_settings(config)
    if message.channel == "email" and settings.smtp is not None:
        from .delivery import SmtpMessageSender

        return SmtpMessageSender(settings.smtp)
    if message.channel == "sms" and settings.sms_gateway is not None:
        from .delivery import SmsGatewayMessageSender

        return SmsGatewayMessageSender(settings.sms_gateway)
    return None
