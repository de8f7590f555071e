"""The Flask application the conformance suite runs against (the suite's protected routes and
its transaction-bound payment route), and Werkzeug's threaded server (Flask's own) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, g, jsonify
from stepup_flask import StepUp, requires_scope
from werkzeug.serving import make_server

from stepup_core.testing.protected import PROTECTED_ROUTES, TRANSACTION_ROUTES, handler_body, json_body_details
from stepup_core.testing.servers import serving_in_thread


def payment_details(request: Any) -> Any:
    """The transaction builder, run in the request's thread: the JSON body is the details."""
    return json_body_details(request.get_data())


def flask_app(stepup: StepUp, name: str = "conformance") -> Flask:
    app = Flask(name)
    stepup.init_app(app)
    for path, scope in PROTECTED_ROUTES.items():

        def add(path: str = path, scope: str = scope) -> None:
            @app.post(path, endpoint=path)
            @requires_scope(scope)
            def handler() -> Any:
                return jsonify(handler_body(g.stepup.principal, g.stepup.grant, scope))

        add()
    for path, scope in TRANSACTION_ROUTES.items():

        def add_bound(path: str = path, scope: str = scope) -> None:
            @app.post(path, endpoint=path)
            @requires_scope(scope, transaction=payment_details)
            def pay() -> Any:
                return jsonify(handler_body(g.stepup.principal, g.stepup.grant, scope, g.stepup.transaction))

        add_bound()
    return app


@contextmanager
def serve_werkzeug(app: Flask) -> Iterator[str]:
    """Flask's own server (Werkzeug), one thread per request, on loopback."""
    with serving_in_thread(make_server("127.0.0.1", 0, app, threaded=True)) as base_url:
        yield base_url
