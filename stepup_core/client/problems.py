"""Turning a server's ``application/problem+json`` answer back into the stepup error it was."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import (
    RetryLater,
    ServerError,
    StepUpError,
    StepUpRequired,
    ValidationError,
    error_for_code,
)

_STANDARD_MEMBERS = {"type", "title", "status", "detail", "code", "instance"}


def error_from_problem(status: int, body: Any) -> StepUpError:
    """The :mod:`stepup_core.errors` class for the problem's ``code``, with its message and details.

    An answer that is not a problem document (a proxy's HTML page, say) becomes
    :class:`~stepup_core.errors.ServerError` naming the status.
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("code"), str):
        return _build(ServerError, f"the server answered {status} without a problem document", {}, status)
    code = body["code"]
    cls = error_for_code(code)
    detail = body.get("detail") or body.get("title") or f"the server answered {status} ({code})"
    extras = {k: v for k, v in body.items() if k not in _STANDARD_MEMBERS}
    error = _build(cls, str(detail), extras, status)
    if cls is StepUpError and code != StepUpError.code:
        error.details["code"] = code
    return error


def _build(cls: type[StepUpError], message: str, extras: dict[str, Any], status: int) -> StepUpError:
    # Subclasses take different constructor arguments; set the common state directly.
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    error.details = dict(extras)
    if isinstance(error, ValidationError):
        errors = extras.get("errors")
        error.errors = list(errors) if isinstance(errors, list) else []
    if isinstance(error, StepUpRequired):
        error.scope = str(extras.get("scope", ""))
        error.check = extras.get("check")
        acr_values = extras.get("acrValues")
        error.acr_values = tuple(str(v) for v in acr_values) if isinstance(acr_values, list) else ()
        max_age = extras.get("maxAge")
        error.max_age = float(max_age) if isinstance(max_age, int | float) and not isinstance(max_age, bool) else None
    if isinstance(error, RetryLater):
        retry = extras.get("retryAfter", 0)
        error.retry_after = float(retry) if isinstance(retry, int | float) else 0.0
    error.details["httpStatus"] = status
    return error
