"""The built-in audit sink: one JSON line per event on the ``stepup.audit`` logger."""

from __future__ import annotations

import logging

from ..hookspecs import hookimpl
from ..models import AuditEvent
from ..serialization import dumps

audit_log = logging.getLogger("stepup.audit")


@hookimpl(trylast=True)
def stepup_event(event: AuditEvent) -> None:
    level = logging.WARNING if event.outcome in ("failure", "warning") else logging.INFO
    if audit_log.isEnabledFor(level):  # serialise only when someone listens
        audit_log.log(level, dumps(event))
