"""The fallback code sender: prints the code to standard error. For development only."""

from __future__ import annotations

import sys

from ..config import StepUpConfig
from ..hookspecs import CodeSender, hookimpl
from ..models import CodeDelivery


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
