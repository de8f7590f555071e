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
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, current_app, g, request

from stepup_core.errors import ConfigError
from stepup_core.portal import HostedService, Portal
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.guard import Elevation, Gate, ServiceGate, refusal, token_from
from stepup_core.server.http import Answer, AnyIdentify, normalise_prefix
from stepup_core.server.sync import SyncProtocol, guard_sync

if TYPE_CHECKING:
    from stepup_core.config import StepUpConfig

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


class StepUp:
    """stepup in a Flask application.

    :param app: the application (or call :meth:`init_app` later).
    :param identify: ``(request) -> Principal | None`` given Flask's request.
    :param config: the configuration to open a service from (in a portal of its own)...
    :param hosted: ...or a service already living in a portal.
    :param gate: who decides for the guards (default: the service).
    :param prefix: where the protocol is served (default ``server.prefix``); ``serve_protocol=False``
        serves none (say, with a ``RemoteGuard``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        identify: AnyIdentify,
        config: StepUpConfig | None = None,
        hosted: HostedService | None = None,
        gate: Gate | None = None,
        prefix: str | None = None,
        serve_protocol: bool = True,
    ) -> None:
        self.identify = identify
        if hosted is None and config is not None:
            hosted = HostedService.open(config=config)
            self._owns_hosted = True
        else:
            self._owns_hosted = False
        self.hosted = hosted
        self.portal: Portal = hosted.portal if hosted is not None else Portal.start("stepup-flask")
        self._gate = gate
        self.protocol: SyncProtocol | None = None
        if hosted is not None and serve_protocol:
            self.protocol = SyncProtocol.create(hosted.service, self.portal, identify, prefix=prefix)
        self.prefix = self.protocol.prefix if self.protocol is not None else normalise_prefix(prefix or "/stepup")
        if app is not None:
            self.init_app(app)

    @property
    def gate(self) -> Gate:
        if self._gate is not None:
            return self._gate
        if self.hosted is None:
            raise ConfigError("stepup has no service: give config= or hosted=, or a gate")
        return ServiceGate(self.hosted.service)

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

    def close(self) -> None:
        """Stop the portal (and close the service this object opened, and the gate's connections)."""
        close_gate = getattr(self._gate, "close", None)
        if close_gate is not None and self.portal.running:
            self.portal.call(close_gate)
        if self._owns_hosted and self.hosted is not None:
            self.hosted.close()
        elif self.hosted is None:
            self.portal.close()


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
                chosen = gate or stepup.gate
            except ConfigError as exc:
                return answer_response(refusal(exc, scope=scope, where=request.path))
            outcome = guard_sync(
                chosen, stepup.portal, scope, stepup.identify, request._get_current_object(),  # type: ignore[attr-defined]
                token_from(request.headers), where=request.path,
            )
            if isinstance(outcome, Answer):
                return answer_response(outcome)
            g.stepup = outcome
            return current_app.ensure_sync(view)(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorator
