"""Django REST framework: a permission that needs an elevated access token.

::

    from stepup_django.drf import RequireScope

    class ExportKey(APIView):
        permission_classes = [IsAuthenticated, RequireScope("wallet:export")]

    # settings.py: answer a refusal exactly as every stepup guard does
    REST_FRAMEWORK = {"EXCEPTION_HANDLER": "stepup_django.drf.exception_handler"}

A refusal raises :class:`StepUpRefused`; :func:`exception_handler` answers it byte for byte (the
RFC 9470 401 with its problem body, 503 when the store is down) and leaves every other exception
to DRF's own handler. The caller and the grant are at ``request.stepup`` (DRF's request and
Django's). ``identify`` receives Django's request.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.views import exception_handler as drf_exception_handler

from stepup_core.errors import StepUpError
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.guard import Gate, refusal, token_from
from stepup_core.server.http import Answer

from . import answer_response, get_stepup

__all__ = ["RequireScope", "StepUpRefused", "exception_handler"]


class StepUpRefused(APIException):  # type: ignore[misc]  # DRF ships no type hints
    """A guard's refusal; :attr:`answer` is what to send."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(detail=answer.json().get("detail"))
        self.status_code = answer.status
        self.answer = answer


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    if isinstance(exc, StepUpRefused):
        return answer_response(exc.answer)
    return drf_exception_handler(exc, context)


class _ScopePermission(BasePermission):  # type: ignore[misc]
    scope: str = ""
    gate: Gate | None = None

    def has_permission(self, request: Any, view: Any) -> bool:
        django_request = getattr(request, "_request", request)
        try:
            stepup = get_stepup()
        except StepUpError as exc:
            raise StepUpRefused(refusal(exc, scope=self.scope, where=django_request.path)) from None
        token = token_from(django_request.headers)
        outcome = stepup.decide(self.scope, django_request, token, where=django_request.path, gate=self.gate)
        if isinstance(outcome, Answer):
            raise StepUpRefused(outcome)
        request.stepup = outcome
        django_request.stepup = outcome
        return True


def RequireScope(scope: str, *, gate: Gate | None = None) -> type[BasePermission]:
    """A permission class requiring an elevated access token for ``scope``."""
    validate_scope_syntax(scope)
    return type(f"RequireScope[{scope}]", (_ScopePermission,), {"scope": scope, "gate": gate})
