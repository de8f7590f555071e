"""The fallback senders: print codes and notices to standard error. For development only."""

from __future__ import annotations

import sys

from ..config import StepUpConfig
from ..hookspecs import CodeSender, MessageSender, hookimpl
from ..models import CodeDelivery, Message


class ConsoleSender:
    name = "console"

    async def send(self, delivery: CodeDelivery) -> None:
        print(
            f"[stepup console delivery: development only] {delivery.channel} to {delivery.address}: "
            f"your {delivery.app_name} code is {delivery.code}",
            file=sys.stderr,
            flush=True,
        )


@hookimpl(trylast=True)
def stepup_deliver_code(delivery: CodeDelivery, config: StepUpConfig) -> CodeSender:
    return ConsoleSender()


class ConsoleMessageSender:
    name = "console"

    async def send(self, message: Message) -> None:
        print(
            f"[stepup console delivery: development only] {message.channel} to {message.address}: "
            f"{message.subject}\n{message.text}",
            file=sys.stderr,
            flush=True,
        )


@hookimpl(trylast=True)
def stepup_deliver_message(message: Message, config: StepUpConfig) -> MessageSender:
    return ConsoleMessageSender()
