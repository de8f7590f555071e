"""The client half of ``otp``: ask the person for the code that was sent to them.

:class:`Mailbox` stands in for the person's inbox and phone in unattended runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from stepup_core import hookimpl
from stepup_core.config import StepUpConfig
from stepup_core.errors import StepUpError
from stepup_core.hookspecs import CodeSender
from stepup_core.models import CodeDelivery, CredentialFormat, CredentialView

from .addresses import mask_email, mask_phone_number
from .verifier import METHOD_NAME, PACKAGE

if TYPE_CHECKING:
    from stepup_core.client.method import Answer, ClientContext


def _mask(channel: str, address: str) -> str:
    return mask_email(address) if channel == "email" else mask_phone_number(address)


class _MailboxSender:
    name = "mailbox"

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def send(self, delivery: CodeDelivery) -> None:
        self._mailbox.deliveries.append(delivery)


@attrs.define
class Mailbox:
    """An in-memory inbox and phone that receives codes instead of the person.

    A Mailbox is two things at once:

    - a **pluggy plugin**: its ``stepup_deliver_code`` hook implementation is ``tryfirst``, so
      once registered on the *server's* plugin manager
      (``pm.register(mailbox, name="otp-mailbox")``) it takes every code the server sends
      (only those to ``addresses``, when that is set) and keeps it in memory, ahead of SMTP,
      the SMS gateway and the console. Unregister it to restore real delivery;
    - the **actor** of :meth:`OtpClientMethod.unattended`: put in ``ClientContext.actor``, it
      reads the code back for the destination a challenge names.

    ``stepup demo`` uses it to run the whole exchange with no one at the keyboard; tests use it
    the same way. Never register one on a production server: codes would never reach anyone.
    """

    #: Receive only codes to these addresses (emails compared case-insensitively); None: all.
    addresses: frozenset[str] | None = None
    #: Default address to link when an enrolment asks for one.
    link_address: str | None = None
    deliveries: list[CodeDelivery] = attrs.field(factory=list)

    def accepts(self, address: str) -> bool:
        if self.addresses is None:
            return True
        wanted = {a.casefold() for a in self.addresses}
        return address.casefold() in wanted

    @hookimpl(tryfirst=True)
    def stepup_deliver_code(self, delivery: CodeDelivery, config: StepUpConfig) -> CodeSender | None:
        if not self.accepts(delivery.address):
            return None
        return _MailboxSender(self)

    def latest(self, destination: str | None = None) -> CodeDelivery | None:
        """The newest delivery, or the newest whose masked address is ``destination``."""
        for delivery in reversed(self.deliveries):
            if destination is None or _mask(delivery.channel, delivery.address) == destination:
                return delivery
        return None

    def code_for(self, destination: str | None = None) -> str | None:
        delivery = self.latest(destination)
        return delivery.code if delivery is not None else None


def _code_from(data: Mapping[str, Any], ctx_options: Mapping[str, Any], actor: Any) -> str | None:
    code = ctx_options.get("code")
    if code is not None:
        return str(code)
    if isinstance(actor, Mailbox):
        return actor.code_for(data.get("destination"))
    return None


def _label(data: Mapping[str, Any]) -> str:
    destination = data.get("destination")
    channel = "text message" if data.get("verificationType") == "sms" else "email"
    where = f" to {destination}" if destination else ""
    return f"Enter the 6-digit code sent by {channel}{where}"


class OtpClientMethod:
    """Answers ``otp`` challenges with the code from ``code=``, the actor, or the prompter."""

    name = METHOD_NAME
    package = PACKAGE

    def label(self, credential: CredentialView) -> str:
        """How a credential is offered in a choice: by the channel its code goes over."""
        return "SMS code" if credential.format is CredentialFormat.PHONE_NUMBER else "Email code"

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        from stepup_core.client.method import Answer

        data = challenge.get("data") or {}
        code = _code_from(data, ctx.options, ctx.actor)
        if code is None:
            code = await ctx.prompter.ask_code(_label(data))
        return Answer(response={"code": code.strip()})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        email = ctx.options.get("email")
        phone = ctx.options.get("phone_number") or ctx.options.get("phoneNumber")
        if email is None and phone is None and isinstance(ctx.actor, Mailbox):
            email = ctx.actor.link_address
        if email is not None:
            return {"email": str(email)}
        if phone is not None:
            return {"phoneNumber": str(phone)}
        kinds = ["Email address", "Phone number"]
        choice = await ctx.prompter.choose("What do you want to link?", kinds)
        if choice not in (0, 1):
            raise StepUpError("choose an email address or a phone number to link")
        value = (await ctx.prompter.ask_code(kinds[choice])).strip()
        return {"email": value} if choice == 0 else {"phoneNumber": value}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        data = enrollment.get("data") or {}
        code = _code_from(data, ctx.options, ctx.actor)
        if code is None:
            code = await ctx.prompter.ask_code(_label(data))
        return {"code": code.strip()}

    def unattended(self) -> Mailbox:
        """A :class:`Mailbox`; register it on the server's plugin manager to receive the codes."""
        return Mailbox()
