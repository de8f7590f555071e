"""Time is injected, never patched: every component takes a :class:`Clock`."""

from __future__ import annotations

import time
from typing import Protocol

import attrs


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class SystemClock:
    def now(self) -> float:
        return time.time()


@attrs.define
class ManualClock:
    """A clock tests move by hand."""

    current: float = 1_800_000_000.0

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds
