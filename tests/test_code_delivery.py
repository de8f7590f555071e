"""A method that sends codes must have a real sender for each of its channels before a server
outside development mode starts (``StepUpService.check_code_delivery``, run by
``stepup serve --config``); otherwise its codes would only reach the server's console."""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import pytest

from stepup_core import errors
from stepup_core.config import config_from_mapping
from stepup_core.hookspecs import hookimpl
from stepup_core.models import CodeDelivery
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin


@attrs.define
class SendingPin(PinVerifier):
    """Stands in for a method that sends codes (``otp``)."""

    delivery_channels: tuple[str, ...] = ("email", "sms")


class EmailSender:
    name = "test-email"

    async def send(self, delivery: CodeDelivery) -> None:  # pragma: no cover - never sent here
        pass

    @hookimpl
    def stepup_deliver_code(self, delivery: CodeDelivery, config: Any) -> Any:
        return self if delivery.channel == "email" else None


async def _service(*plugins: object, **config: Any) -> StepUpService:
    pm = get_plugin_manager(load_entrypoints=False)
    for index, plugin in enumerate(plugins):
        pm.register(plugin, name=f"plugin-{index}")
    settings = {"store": "memory:", "secret_key": secrets.token_hex(32), **config}
    return await StepUpService.create(config_from_mapping(settings), pm=pm)


async def test_a_channel_served_only_by_the_console_stops_the_start() -> None:
    service = await _service(ThrowawayPlugin([SendingPin(name="mail")]), EmailSender())
    try:
        with pytest.raises(errors.ConfigError) as info:
            service.check_code_delivery()
    finally:
        await service.close()
    message = str(info.value)
    assert "method 'mail' sends codes by sms, but no sms sender is configured" in message
    assert "allow_console_delivery = true" in message


async def test_real_senders_for_every_channel_or_an_explicit_allowance_pass() -> None:
    for plugins, config in (
        ((ThrowawayPlugin([SendingPin(name="mail", delivery_channels=("email",))]), EmailSender()), {}),
        ((ThrowawayPlugin([SendingPin(name="mail")]),), {"allow_console_delivery": True}),
        ((ThrowawayPlugin([PinVerifier(name="pin")]),), {}),  # sends nothing
    ):
        service = await _service(*plugins, **config)
        try:
            service.check_code_delivery()
        finally:
            await service.close()
