"""Code delivery: finding the sender for a code (the ``stepup_deliver_code`` hook, first answer
wins), sending it with its audit events, and the startup check that no method sends its codes
to nobody but the server's console.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pluggy

from .clock import Clock
from .config import StepUpConfig
from .errors import ConfigError, DeliveryFailed
from .models import AuditEvent, CodeDelivery
from .verifier import Verifier


async def _send(sender: Any, delivery: CodeDelivery) -> None:
    try:
        await sender.send(delivery)
    except DeliveryFailed:
        raise
    except Exception as exc:
        raise DeliveryFailed(
            f"{getattr(sender, 'name', 'sender')} could not deliver the code over {delivery.channel}: {exc}"
        ) from exc


class CodeDeliveries:
    """Codes to senders, for the service (``ctx.deliver_code``) and its startup check."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        config: StepUpConfig,
        clock: Clock,
        emit: Callable[[AuditEvent], Awaitable[None]],
        event: Callable[..., AuditEvent],
    ) -> None:
        self.pm = pm
        self.config = config
        self.clock = clock
        self._emit = emit
        self._event = event

    async def deliver(self, delivery: CodeDelivery) -> None:
        """Send one code; DeliveryFailed (audited as ``code_delivery_failed``) when it could not go."""
        try:
            sender = self.pm.hook.stepup_deliver_code(delivery=delivery, config=self.config)
        except Exception as exc:
            raise DeliveryFailed(f"code delivery failed: {exc}") from exc
        if sender is None:
            raise DeliveryFailed(f"no code sender for channel {delivery.channel!r}")
        details = {"channel": delivery.channel, "sender": getattr(sender, "name", None)}
        try:
            await _send(sender, delivery)
        except DeliveryFailed as failure:
            await self._emit(
                self._event(
                    "code_delivery_failed", "failure", user_id=delivery.user_id, reason=failure.code, details=details
                )
            )
            raise
        await self._emit(self._event("code_delivered", "info", user_id=delivery.user_id, details=details))

    def check(self, verifiers: Iterable[Verifier]) -> None:
        """Refuse to serve when a method would send codes to nobody but the server's console.

        For every channel a method sends codes over (its ``delivery_channels``), a sender other
        than the built-in console one must answer ``stepup_deliver_code``, unless
        ``allow_console_delivery`` is set. Raises :class:`ConfigError` naming the method, the
        channel and the ways out."""
        from .default_plugins.console_delivery import ConsoleSender

        if self.config.allow_console_delivery:
            return
        for verifier in sorted(verifiers, key=lambda v: v.name):
            for channel in getattr(verifier, "delivery_channels", ()):
                probe = CodeDelivery(
                    channel=channel,
                    address="+15550100000" if channel == "sms" else "probe@example.invalid",
                    code="000000",
                    purpose="stepUp",
                    expires_at=self.clock.now(),
                    user_id="-",
                    app_name=self.config.app_name,
                )
                sender = self.pm.hook.stepup_deliver_code(delivery=probe, config=self.config)
                if sender is None or isinstance(sender, ConsoleSender):
                    raise ConfigError(
                        f"method {verifier.name!r} sends codes by {channel}, but no {channel} sender is "
                        f"configured: its codes would only be printed to this server's console. Configure "
                        f"one (see the {getattr(verifier, 'package', verifier.name)} documentation), stop the "
                        f"method from using {channel}, or set allow_console_delivery = true (for development only)"
                    )
