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
Django's). ``identify`` receives Django's request; a ``transaction=`` builder receives DRF's
(``lambda request: request.data``), and the details it built and the guard checked are at
``request.stepup.transaction``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.views import exception_handler as drf_exception_handler

from stepup_core.errors import StepUpError
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.guard import Gate, TransactionBuilder, refusal, token_from
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
    #: In a tuple: a function stored on a class would become a method.
    transaction: tuple[TransactionBuilder, ...] = ()

    def has_permission(self, request: Any, view: Any) -> bool:
        django_request = getattr(request, "_request", request)
        try:
            stepup = get_stepup()
        except StepUpError as exc:
            raise StepUpRefused(refusal(exc, scope=self.scope, where=django_request.path)) from None
        token = token_from(django_request.headers)
        built = _reading(request, self.transaction[0]) if self.transaction else None
        outcome = stepup.decide(
            self.scope, django_request, token, where=django_request.path, gate=self.gate, transaction=built
        )
        if isinstance(outcome, Answer):
            raise StepUpRefused(outcome)
        request.stepup = outcome
        django_request.stepup = outcome
        return True


def _reading(request: Any, build: TransactionBuilder) -> TransactionBuilder:
    """The builder, given DRF's request (``request.data``) whatever the guard hands it."""

    def builder(_: Any) -> Any:
        return build(request)

    return builder


def RequireScope(
    scope: str, *, gate: Gate | None = None, transaction: TransactionBuilder | None = None
) -> type[BasePermission]:
    """A permission class requiring an elevated access token for ``scope`` (bound to the
    details ``transaction`` builds from DRF's request, when given: else 403
    ``transaction_mismatch``, not spent)."""
    validate_scope_syntax(scope)
    attributes = {"scope": scope, "gate": gate, "transaction": (transaction,) if transaction else ()}
    return type(f"RequireScope[{scope}]", (_ScopePermission,), attributes)
