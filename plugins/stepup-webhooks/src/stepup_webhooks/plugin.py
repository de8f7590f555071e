"""stepup hook implementations for ``webhooks``: one outbox and worker per service that has
endpoints configured. Only cheap imports here."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from stepup_core import hookimpl
from stepup_core.models import AuditEvent

if TYPE_CHECKING:
    from stepup_core.service import StepUpService

    from .outbox import Dispatcher

_dispatchers: weakref.WeakKeyDictionary[StepUpService, Dispatcher] = weakref.WeakKeyDictionary()


def dispatcher_of(service: StepUpService) -> Dispatcher | None:
    """The service's outbox and worker (None when no endpoint is configured)."""
    return _dispatchers.get(service)


@hookimpl
def stepup_startup(service: StepUpService) -> None:
    from .settings import load_settings

    settings = load_settings(service.config)
    if not settings.endpoints:
        return
    from .outbox import Dispatcher

    dispatcher = Dispatcher(service, settings)
    _dispatchers[service] = dispatcher
    dispatcher.start()


@hookimpl
async def stepup_shutdown(service: StepUpService) -> None:
    dispatcher = _dispatchers.pop(service, None)
    if dispatcher is not None:
        await dispatcher.stop()


@hookimpl
def stepup_event(event: AuditEvent, service: StepUpService) -> Awaitable[None] | None:
    # Plain, not a coroutine function: every audit event passes here (one per protected
    # request), and only an event some endpoint subscribes to has work to await.
    dispatcher = _dispatchers.get(service)
    if dispatcher is None or not dispatcher.wanted_by(event.type):
        return None
    return dispatcher.enqueue(event)
