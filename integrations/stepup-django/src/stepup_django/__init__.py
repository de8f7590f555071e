"""stepup for Django: the protocol in your URLconf, and ``@requires_scope`` for your views.

settings.py::

    STEPUP = {
        "CONFIG": BASE_DIR / "stepup.toml",        # or a mapping shaped like stepup.toml
        "IDENTIFY": "accounts.stepup.identify",     # (request) -> Principal | None
    }

urls.py::

    urlpatterns = [
        path("stepup/", include("stepup_django.urls")),   # at [server] prefix, "/stepup"
        path("wallet/export", views.export),
    ]

views.py::

    from stepup_django import requires_scope

    @requires_scope("wallet:export")
    def export(request):                 # or async def
        grant = request.stepup.grant     # spent already if single-use
        ...

- ``identify(request)`` receives Django's ``HttpRequest`` (after your middleware: ``request.user``
  and ``request.session`` are there). A plain function runs in the request's thread (for an
  async view, in a worker thread through ``sync_to_async``: the ORM is allowed); a coroutine
  function is awaited.
- The guard answers exactly what every stepup guard answers: the RFC 9470 401 with its problem
  body, 503 when the store is down; a single-use token is spent atomically. The caller and the
  grant are at ``request.stepup`` (an :class:`~stepup_core.server.guard.Elevation`).
- stepup's service lives in an event loop of its own (a :class:`~stepup_core.portal.Portal`
  thread), which serves sync views, async views and the protocol alike.
- Django REST framework: :mod:`stepup_django.drf`.

``"GATE"`` names a factory (``() -> Gate``), say one returning a
:class:`~stepup_core.remote.RemoteGuard` for an application that does not share the store;
without ``"CONFIG"`` no protocol is served then.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from django.http import HttpRequest, HttpResponse

from stepup_core.errors import ConfigError, StepUpError
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.guard import Elevation, Gate, guard, identify_caller, refusal, token_from
from stepup_core.server.http import Answer
from stepup_core.server.problems import RouteNotFound, problem_answer
from stepup_core.server.sync import SyncStepUp, is_async_callable

if TYPE_CHECKING:
    from stepup_core.models import Principal

__all__ = ["Elevation", "StepUp", "answer_response", "configure", "get_stepup", "requires_scope"]

F = TypeVar("F", bound=Callable[..., Any])


def answer_response(answer: Answer) -> HttpResponse:
    """A stepup :class:`~stepup_core.server.http.Answer` as a Django response, byte for byte."""
    headers = dict(answer.headers)
    response = HttpResponse(answer.body, status=answer.status, content_type=headers.pop("Content-Type", None))
    for name, value in headers.items():
        response[name] = value
    return response


class StepUp(SyncStepUp):
    """stepup in a Django project (built from ``settings.STEPUP`` by :func:`get_stepup`).

    :param identify: ``(request) -> Principal | None`` given Django's request.
    :param config: the configuration to open a service from (in a portal of its own)...
    :param hosted: ...or a service already living in a portal.
    :param gate: who decides for the guards (default: the service).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(portal_name="stepup-django", **options)

    def protocol_view(self, request: HttpRequest) -> HttpResponse:
        """Answer a protocol request (what ``stepup_django.urls`` routes here)."""
        if self.protocol is None:
            return answer_response(problem_answer(RouteNotFound("this application serves no stepup protocol")))
        prefix = self.protocol.prefix
        path = request.path
        if not (path == prefix or path.startswith(prefix + "/")):
            return answer_response(problem_answer(RouteNotFound(
                f"stepup's routes live under {prefix}: include stepup_django.urls there"
            )))
        query: dict[str, str] = {}
        for name, values in request.GET.lists():
            if values:
                query.setdefault(name, values[0])
        answer = self.protocol.answer(
            method=request.method or "GET",
            below_prefix=path[len(prefix) :] or "/",
            path=path,
            headers=list(request.headers.items()),
            query=query,
            read=request.read,
            native=request,
            scheme=request.scheme or "http",
        )
        return answer_response(answer)


_lock = threading.Lock()
_configured: list[StepUp] = []


def configure(stepup: StepUp | None) -> None:
    """Use ``stepup`` from now on (tests, or a project that builds its own); None forgets it."""
    with _lock:
        _configured.clear()
        if stepup is not None:
            _configured.append(stepup)


def _from_settings() -> StepUp:
    from django.conf import settings
    from django.utils.module_loading import import_string

    from stepup_core.config import config_from_mapping, load_config

    options: Mapping[str, Any] = getattr(settings, "STEPUP", None) or {}
    identify_path = options.get("IDENTIFY")
    if not identify_path:
        raise ConfigError(
            "settings.STEPUP['IDENTIFY'] must name your identify function, e.g. 'accounts.stepup.identify'"
        )
    identify = import_string(identify_path) if isinstance(identify_path, str) else identify_path
    raw = options.get("CONFIG")
    config = None
    if isinstance(raw, str | Path):
        config = load_config(raw)
    elif isinstance(raw, Mapping):
        config = config_from_mapping(raw)
    gate_factory = options.get("GATE")
    gate = (import_string(gate_factory) if isinstance(gate_factory, str) else gate_factory)() if gate_factory else None
    if config is None and gate is None:
        raise ConfigError("settings.STEPUP needs 'CONFIG' (a stepup.toml path or a mapping) or a 'GATE'")
    return StepUp(identify=identify, config=config, gate=gate)


def get_stepup() -> StepUp:
    """The project's stepup: the configured one, else built once from ``settings.STEPUP``."""
    with _lock:
        if not _configured:
            _configured.append(_from_settings())
        return _configured[0]


def _replay(principal: Principal) -> Callable[[Any], Any]:
    async def identified(_: Any) -> Principal:
        return principal

    return identified


def requires_scope(scope: str, *, gate: Gate | None = None) -> Callable[[F], F]:
    """Let a request into the view (sync or async) only with an elevated access token for
    ``scope``. The caller and the grant are at ``request.stepup``."""
    validate_scope_syntax(scope)

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                outcome = await _decide_async(request, scope, gate)
                if isinstance(outcome, Answer):
                    return answer_response(outcome)
                request.stepup = outcome
                return await view(request, *args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                stepup = get_stepup()
            except StepUpError as exc:
                return answer_response(refusal(exc, scope=scope, where=request.path))
            outcome = stepup.decide(scope, request, token_from(request.headers), where=request.path, gate=gate)
            if isinstance(outcome, Answer):
                return answer_response(outcome)
            request.stepup = outcome
            return view(request, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorator


async def _decide_async(request: HttpRequest, scope: str, gate: Gate | None) -> Elevation | Answer:
    from asgiref.sync import sync_to_async

    try:
        stepup = get_stepup() if _configured else await sync_to_async(get_stepup)()
        chosen = gate or stepup.gate
    except StepUpError as exc:
        return refusal(exc, scope=scope, where=request.path)
    identify: Any = stepup.identify if is_async_callable(stepup.identify) else sync_to_async(stepup.identify)
    found = await identify_caller(identify, request, scope=scope, where=request.path)
    if isinstance(found, Answer):
        return found
    token = token_from(request.headers)
    return await stepup.portal.run(guard(chosen, scope, _replay(found), request, token, where=request.path))
