"""The error this method raises besides the core's verification errors (defined in the core so
clients map its code back to a class)."""

from __future__ import annotations

from stepup_core.errors import ProviderUnavailable

__all__ = ["ProviderUnavailable"]
