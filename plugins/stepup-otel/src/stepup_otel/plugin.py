"""stepup hook implementations for ``otel``: each hands over to one :class:`StepUpTelemetry`
that reports to the global OpenTelemetry providers (set them with the SDK as usual, before or
after stepup starts). Only cheap imports here: OpenTelemetry loads when the first hook fires."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from stepup_core import hookimpl
from stepup_core.config import StepUpConfig
from stepup_core.models import AuditEvent, Operation

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

    from stepup_core.service import StepUpService

    from .telemetry import StepUpTelemetry

_telemetry: StepUpTelemetry | None = None


def telemetry() -> StepUpTelemetry:
    """The entry point's :class:`StepUpTelemetry` (global providers), made on first use."""
    global _telemetry
    if _telemetry is None:
        from .telemetry import StepUpTelemetry

        _telemetry = StepUpTelemetry()
    return _telemetry


@hookimpl
async def stepup_startup(service: StepUpService) -> None:
    await telemetry().stepup_startup(service)


@hookimpl
async def stepup_shutdown(service: StepUpService) -> None:
    if _telemetry is not None:
        await _telemetry.stepup_shutdown(service)


@hookimpl
def stepup_event(event: AuditEvent) -> None:
    telemetry().stepup_event(event)


@hookimpl
def stepup_operation(operation: Operation) -> None:
    telemetry().stepup_operation(operation)


@hookimpl
def stepup_server_middlewares(config: StepUpConfig) -> Iterable[Middleware]:
    return telemetry().stepup_server_middlewares(config)
