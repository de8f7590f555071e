"""Kept so ``from stepup_core.server.testing import ...`` keeps working: the response validator
lives in the test kit, :mod:`stepup_core.testing.responses`."""

from ..testing.responses import ResponseMismatch, ResponseValidator

__all__ = ["ResponseMismatch", "ResponseValidator"]
