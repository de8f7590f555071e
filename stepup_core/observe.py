"""Timing for the ``stepup_operation`` hook: measured only when a plugin listens.

::

    with observe(pm, "verifier.verify", method=verifier.name):
        verification = await verifier.verify(ctx, attempt)

    with observe(pm, "guard", scope=scope) as operation:
        grant = await service.require_scope(principal, scope, token)
        operation.outcome = "granted" if grant else "not_required"

With no ``stepup_operation`` implementation registered, entering and leaving costs one list
copy: no clock is read and no :class:`~stepup_core.models.Operation` is built. The outcome is
``success`` unless the block sets another; an exception leaving the block makes it the error's
stable ``code`` (``error`` for one that is not a stepup error) and is re-raised.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

import pluggy

from .errors import StepUpError
from .models import Operation
from .plugins import call_each_plugin

log = logging.getLogger("stepup")


class observe:
    __slots__ = ("_impls", "_pm", "_started", "_wall", "attributes", "name", "outcome")

    def __init__(self, pm: pluggy.PluginManager, name: str, **attributes: str) -> None:
        self._pm = pm
        self._impls = pm.hook.stepup_operation.get_hookimpls()
        self.name = name
        self.attributes = attributes
        self.outcome = "success"
        self._started = 0.0
        self._wall = 0.0

    def __enter__(self) -> observe:
        if self._impls:
            self._wall = time.time()
            self._started = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._impls:
            return
        duration = time.perf_counter() - self._started
        if exc is not None:
            self.outcome = exc.code if isinstance(exc, StepUpError) else "error"
        report(self._pm, Operation(self.name, self.outcome, self._wall, duration, dict(self.attributes)))


def report(pm: pluggy.PluginManager, operation: Operation) -> None:
    """Hand ``operation`` to each implementation; one that raises is logged and skipped."""
    for owner, result in call_each_plugin(pm, "stepup_operation", operation=operation):
        if isinstance(result, BaseException):
            log.error("stepup_operation implementation %s failed", owner, exc_info=result)
