"""The client half: ask the person for the PIN (or take it from the call's options)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from stepup_core.client.method import Answer, ClientContext


@attrs.define
class RememberedPin:
    """Stands in for the person in unattended runs: it knows the PIN it enrolled."""

    pin: str = "246810"


class PinClientMethod:
    name = "pin"
    package = "stepup-example"

    async def _pin(self, ctx: ClientContext, label: str) -> str:
        if "code" in ctx.options:
            return str(ctx.options["code"])
        if isinstance(ctx.actor, RememberedPin):
            return ctx.actor.pin
        return await ctx.prompter.ask_code(label)

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        return Answer(response={"pin": await self._pin(ctx, "PIN")})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        return {"pin": await self._pin(ctx, "Choose a PIN")}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        return {"pin": await self._pin(ctx, "Repeat the PIN")}

    def unattended(self) -> RememberedPin:
        return RememberedPin()
