"""stepup for Flask.

::

    from flask import Flask, g
    from stepup_flask import StepUp, requires_scope

    app = Flask(__name__)
    stepup = StepUp(app, identify=identify, config=load_config("stepup.toml"))   # protocol under /stepup

    @app.post("/wallet/export")
    @requires_scope("wallet:export")
    def export():
        grant = g.stepup.grant          # spent already if single-use
        ...

- ``identify(request)`` is the application's: it receives Flask's request and runs in the
  request's thread, inside the application context, so it may read ``flask.session`` or the
  database. A plain function, or a coroutine function.
- :func:`requires_scope` answers exactly what every stepup guard answers: the RFC 9470 401 and
  its problem body, 503 when the store is down; a single-use token is spent atomically. The
  :class:`~stepup_core.server.guard.Elevation` (caller and grant) is at ``g.stepup``.
- stepup's service lives in an event loop of its own (a :class:`~stepup_core.portal.Portal`
  thread), since Flask's views are synchronous; :meth:`StepUp.close` stops it.
- ``gate=RemoteGuard(...)`` asks a ``stepup serve`` beside the application instead (no store,
  no protocol routes here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from stepup_core.errors import ConfigError
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.guard import Elevation, Gate, refusal, token_from
from stepup_core.server.http import Answer
from stepup_core.server.sync import SyncStepUp

__all__ = ["Elevation", "StepUp", "answer_response", "requires_scope", "stepup_of"]

F = TypeVar("F", bound=Callable[..., Any])
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def answer_response(answer: Answer) -> Response:
    """A stepup :class:`~stepup_core.server.http.Answer` as a Flask response, byte for byte."""
    response = Response(answer.body, status=answer.status)
    response.headers.clear()
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


class StepUp(SyncStepUp):
    """stepup in a Flask application.

    :param app: the application (or call :meth:`init_app` later).
    :param identify: ``(request) -> Principal | None`` given Flask's request.
    :param config: the configuration to open a service from (in a portal of its own)...
    :param hosted: ...or a service already living in a portal.
    :param gate: who decides for the guards (default: the service).
    :param prefix: where the protocol is served (default ``server.prefix``); ``serve_protocol=False``
        serves none (say, with a ``RemoteGuard``).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        super().__init__(portal_name="stepup-flask", **options)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the protocol's routes under the prefix and make this the app's stepup."""
        app.extensions["stepup"] = self
        if self.protocol is None:
            return
        view = self._protocol_view
        for rule in (self.prefix, self.prefix + "/", self.prefix + "/<path:rest>"):
            app.add_url_rule(
                rule, endpoint=f"stepup{rule}", view_func=view, methods=_METHODS, provide_automatic_options=False
            )

    def _protocol_view(self, rest: str = "") -> Response:
        assert self.protocol is not None
        below = request.path[len(self.prefix) :] or "/"
        query: dict[str, str] = {}
        for name, value in request.args.items(multi=True):
            query.setdefault(name, value)
        answer = self.protocol.answer(
            method=request.method,
            below_prefix=below,
            path=request.path,
            headers=list(request.headers.items()),
            query=query,
            read=request.stream.read,
            native=request._get_current_object(),  # type: ignore[attr-defined]
            scheme=request.scheme,
        )
        return answer_response(answer)


def stepup_of(app: Flask | None = None) -> StepUp:
    found = (app or current_app).extensions.get("stepup")
    if not isinstance(found, StepUp):
        raise ConfigError("stepup is not set up on this application: StepUp(app, identify=...)")
    return found


def requires_scope(scope: str, *, gate: Gate | None = None) -> Callable[[F], F]:
    """Let a request into the view only with an elevated access token for ``scope``.

    The token comes from ``X-Elevated-Access-Token``; a single-use token is spent. The caller and
    the grant are at ``g.stepup`` (an :class:`~stepup_core.server.guard.Elevation`).
    """
    validate_scope_syntax(scope)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                stepup = stepup_of()
            except ConfigError as exc:
                return answer_response(refusal(exc, scope=scope, where=request.path))
            native = request._get_current_object()  # type: ignore[attr-defined]
            outcome = stepup.decide(scope, native, token_from(request.headers), where=request.path, gate=gate)
            if isinstance(outcome, Answer):
                return answer_response(outcome)
            g.stepup = outcome
            return current_app.ensure_sync(view)(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorator
