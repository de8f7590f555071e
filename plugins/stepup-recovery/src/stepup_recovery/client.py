"""The client half of the ``recovery`` method, and a code sheet for unattended runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from stepup_core.client.method import Answer, ClientContext

from .verifier import METHOD, PACKAGE


@attrs.define
class RecoveryCodeSheet:
    """Stands in for the sheet of codes a person saved at enrolment: it remembers the codes
    shown and hands out each one once. A new set replaces the old one, as on the server."""

    codes: list[str] = attrs.field(factory=list)
    used: list[str] = attrs.field(factory=list)

    def remember(self, codes: list[str]) -> None:
        self.codes = list(codes)
        self.used = []

    def next_code(self) -> str:
        """An unused code, crossed off the sheet."""
        for code in self.codes:
            if code not in self.used:
                self.used.append(code)
                return code
        raise LookupError("every recovery code on the sheet was used; generate a new set")

    @property
    def remaining(self) -> int:
        return len([c for c in self.codes if c not in self.used])


def _enrollment_data(enrollment: Mapping[str, Any]) -> Mapping[str, Any]:
    data = enrollment.get("data")
    return data if isinstance(data, Mapping) else enrollment


class RecoveryClientMethod:
    """Asks the person for one of their recovery codes (or uses ``code=``, or the unattended
    :class:`RecoveryCodeSheet`)."""

    name: str = METHOD
    package: str = PACKAGE

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        code = ctx.options.get("code")
        if code is None and isinstance(ctx.actor, RecoveryCodeSheet):
            code = ctx.actor.next_code()
        if code is None:
            code = await ctx.prompter.ask_code("One of your recovery codes (each works once)")
        return Answer(response={"code": str(code).strip()})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        return {}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        """Recovery codes are enrolled at once: keep (or show) the codes; nothing to send back."""
        codes = [str(c) for c in _enrollment_data(enrollment).get("codes", [])]
        if isinstance(ctx.actor, RecoveryCodeSheet):
            ctx.actor.remember(codes)
        else:
            await ctx.prompter.tell(
                "Your recovery codes. Store them somewhere safe: each works once, and they are not shown "
                "again. Any earlier codes no longer work.\n" + "\n".join(codes)
            )
        return {}

    def unattended(self) -> RecoveryCodeSheet:
        return RecoveryCodeSheet()
