"""The built-in security notices (``stepup_core.notifications``): a credential linked, unlinked
or reset, a user locked out. Cheap to import: the templates load when a service starts."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl
from ..models import AuditEvent, CredentialChange

if TYPE_CHECKING:
    from ..service import StepUpService


@hookimpl
def stepup_startup(service: StepUpService) -> None:
    from ..notifications import notifier_for

    notifier_for(service)  # a bad [plugins.notifications] table or template fails the start


@hookimpl
def stepup_shutdown(service: StepUpService) -> None:
    from ..notifications import forget

    forget(service)


@hookimpl
async def stepup_credential_changed(change: CredentialChange, service: StepUpService) -> None:
    from ..notifications import notifier_for

    notifier = notifier_for(service)
    if notifier is not None:
        await notifier.credential_changed(change)


@hookimpl
def stepup_event(event: AuditEvent, service: StepUpService) -> Awaitable[None] | None:
    # Plain, not a coroutine function: every audit event passes here (one per protected
    # request), and only a lockout has work to await.
    if event.type != "locked_out":
        return None
    from ..notifications import notifier_for

    notifier = notifier_for(service)
    return None if notifier is None else notifier.locked_out(event)
