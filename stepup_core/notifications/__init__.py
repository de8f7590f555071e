"""Security notices: tell the user when a credential is linked, unlinked or reset, or when they
are locked out, through their email addresses (and phone numbers) on the configured sender.

``[plugins.notifications]`` in ``stepup.toml``::

    [plugins.notifications]
    enabled = true                 # the default
    locale = "de"                  # en (default), de, fr, or one of templates_dir
    templates_dir = "notices/"     # <locale>.toml files overriding the built-in texts
    channels = ["email", "sms"]    # the default: every address of the user
    remember_removed_addresses = 86400   # seconds; see below

Who is told: every email address and phone number the user has (linked in stepup, or supplied
by the application through ``stepup_user_credentials``), plus every address unlinked within
``remember_removed_addresses`` (default one day, the longest an elevated token may live). So a
session that steps up once, links its own address and unlinks the owner's can never make the
notices go only to the address it linked: the addresses from before that step-up hear of every
change made under it, and the address being unlinked hears of its own removal.

Notices go out through the first ``stepup_deliver_message`` sender that answers: stepup-otp's
SMTP relay or SMS gateway when configured, else the console. They are sent before the change's
response returns (to all recipients at once), so a process that stops right after a change has
already told the user; a slow relay delays that response by at most its timeout. A failed send
never undoes or fails the change: it is logged and emits ``notification_failed`` (a success
emits ``notification_sent``; neither names the address).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError
from ..models import AuditEvent, Credential, CredentialChange, CredentialFormat, Message, Principal
from ..store.base import make_key
from .templates import BUILT_IN_LOCALES, KINDS, NoticeTemplates

if TYPE_CHECKING:
    from ..service import StepUpService

__all__ = [
    "BUILT_IN_LOCALES",
    "KINDS",
    "NoticeTemplates",
    "NotificationSettings",
    "Notifier",
    "notifier_for",
]

log = logging.getLogger("stepup.notifications")

PLUGIN_NAME = "notifications"
CHANNELS = {CredentialFormat.EMAIL: "email", CredentialFormat.PHONE_NUMBER: "sms"}


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def _channels(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = set(value) - set(CHANNELS.values())
    if unknown:
        raise ValueError(f"channels may be 'email' and 'sms', not {sorted(unknown)}")


def _kinds(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = set(value) - set(KINDS)
    if unknown:
        raise ValueError(f"kinds may be {', '.join(KINDS)}, not {sorted(unknown)}")


@attrs.frozen
class NotificationSettings:
    """``[plugins.notifications]``."""

    enabled: bool = True
    locale: str = "en"
    #: A directory of ``<locale>.toml`` files whose keys override the built-in texts.
    templates_dir: str | None = None
    channels: tuple[str, ...] = attrs.field(default=("email", "sms"), validator=_channels)
    #: Which notices to send.
    kinds: tuple[str, ...] = attrs.field(default=KINDS, validator=_kinds)
    #: Seconds an unlinked address keeps hearing of changes to the account.
    remember_removed_addresses: float = attrs.field(default=86_400.0, validator=_positive)


def load_settings(service: StepUpService) -> NotificationSettings:
    settings = service.config.plugin_section(PLUGIN_NAME, NotificationSettings)
    if not isinstance(settings, NotificationSettings):  # pragma: no cover - plugin_section guarantees it
        raise ConfigError("plugins.notifications could not be read")
    return settings


def _address_of(credential: Credential, channels: Iterable[str]) -> tuple[str, str] | None:
    channel = CHANNELS.get(credential.format)
    if channel is None or channel not in channels or not credential.identifier:
        return None
    return channel, credential.identifier


def _removed_index(user_id: str) -> str:
    return make_key("notice-removed", user_id)


def _removed_key(user_id: str, channel: str, address: str) -> str:
    digest = hashlib.sha256(f"{channel}:{address.lower()}".encode()).hexdigest()
    return make_key("notice-removed", user_id, digest)


class Notifier:
    """The notices of one service: settings, templates and the sends in flight."""

    def __init__(self, service: StepUpService, settings: NotificationSettings) -> None:
        self.service = service
        self.settings = settings
        self.templates = NoticeTemplates.load(settings.locale, settings.templates_dir)

    # --- who ------------------------------------------------------------------------------

    async def remember_removed(self, user_id: str, credentials: Iterable[Credential]) -> None:
        for credential in credentials:
            found = _address_of(credential, self.settings.channels)
            if found is None:
                continue
            channel, address = found
            await self.service.store.put(
                _removed_key(user_id, channel, address),
                json.dumps({"channel": channel, "address": address}),
                ttl=self.settings.remember_removed_addresses,
                indexes=[_removed_index(user_id)],
            )

    async def recipients(self, user_id: str, session_id: str) -> list[tuple[str, str]]:
        """(channel, address) of every address of the user now, and every one removed lately."""
        credentials: list[Credential] = list(await self.service.credentials.list_for_user(user_id))
        principal = Principal(user_id, session_id)
        for answer in self.service.pm.hook.stepup_user_credentials(principal=principal):
            try:
                supplied = (await answer) if inspect.isawaitable(answer) else answer
                credentials.extend(supplied or ())
            except Exception:
                log.exception("stepup_user_credentials failed while finding whom to notify")
        found = [a for a in (_address_of(c, self.settings.channels) for c in credentials) if a]
        for raw in (await self.service.store.list_index(_removed_index(user_id))).values():
            record = json.loads(raw)
            found.append((record["channel"], record["address"]))
        unique: dict[tuple[str, str], tuple[str, str]] = {}
        for channel, address in found:
            unique.setdefault((channel, address.strip().lower()), (channel, address))
        return list(unique.values())

    # --- what -----------------------------------------------------------------------------

    def messages(
        self,
        kind: str,
        user_id: str,
        recipients: Iterable[tuple[str, str]],
        *,
        at: float,
        credential: Credential | None = None,
        minutes: int = 0,
    ) -> list[Message]:
        rendered = self.templates.render(
            kind,
            app=self.service.config.app_name,
            at=at,
            credential_format=credential.format.value if credential else None,
            alias=credential.alias if credential else None,
            minutes=minutes,
        )
        out = []
        for channel, address in recipients:
            email = channel == "email"
            out.append(
                Message(
                    channel=channel,
                    address=address,
                    subject=rendered.subject,
                    text=rendered.text if email else rendered.sms,
                    html=rendered.html if email else None,
                    user_id=user_id,
                    kind=kind,
                    app_name=self.service.config.app_name,
                )
            )
        return out

    # --- when -----------------------------------------------------------------------------

    async def credential_changed(self, change: CredentialChange) -> None:
        kind = f"credential_{change.kind.value}"
        removed = [change.credential] if change.kind.value == "unlinked" else list(change.replaced)
        await self.remember_removed(change.user_id, removed)
        if kind not in self.settings.kinds:
            return
        recipients = await self.recipients(change.user_id, change.session_id)
        await self.send(self.messages(kind, change.user_id, recipients, at=change.at, credential=change.credential))

    async def locked_out(self, event: AuditEvent) -> None:
        if "locked_out" not in self.settings.kinds or event.user_id is None:
            return
        recipients = await self.recipients(event.user_id, event.session_id or "")
        minutes = max(1, round(self.service.config.limits.lockout_window / 60))
        await self.send(self.messages("locked_out", event.user_id, recipients, at=event.at, minutes=minutes))

    async def send(self, messages: list[Message]) -> None:
        await asyncio.gather(*(self.deliver(message) for message in messages))

    async def deliver(self, message: Message) -> None:
        service = self.service
        sender: Any = None
        try:
            sender = service.pm.hook.stepup_deliver_message(message=message, config=service.config)
            if sender is None:
                raise ConfigError(f"no message sender for channel {message.channel!r}")
            await sender.send(message)
        except Exception as exc:  # noqa: BLE001 - a notice that fails never fails the change
            log.warning(
                "could not send the %s notice over %s with %s: %s",
                message.kind,
                message.channel,
                getattr(sender, "name", "no sender"),
                type(exc).__name__,
            )
            outcome, event_type, reason = "failure", "notification_failed", getattr(exc, "code", type(exc).__name__)
        else:
            outcome, event_type, reason = "info", "notification_sent", None
        await service.emit(
            AuditEvent(
                type=event_type,
                outcome=outcome,
                at=service.clock.now(),
                user_id=message.user_id,
                reason=reason,
                details={"kind": message.kind, "channel": message.channel, "sender": getattr(sender, "name", None)},
            )
        )


_notifiers: weakref.WeakKeyDictionary[StepUpService, Notifier | None] = weakref.WeakKeyDictionary()


def notifier_for(service: StepUpService) -> Notifier | None:
    """The service's notifier (built on first use), or None when notices are turned off."""
    if service in _notifiers:
        return _notifiers[service]
    settings = load_settings(service)
    notifier = Notifier(service, settings) if settings.enabled else None
    _notifiers[service] = notifier
    return notifier


def forget(service: StepUpService) -> None:
    _notifiers.pop(service, None)
