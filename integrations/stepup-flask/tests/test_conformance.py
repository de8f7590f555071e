"""stepup's protected-route conformance suite against the Flask decorator, the application
served by Werkzeug's threaded server (Flask's own), the service in a portal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g, jsonify
from stepup_flask import StepUp, requires_scope
from stepup_flask_testserver import serve_werkzeug

from stepup_core.testing.protected import (
    PROTECTED_ROUTES,
    ProtectedRouteSuite,
    ProtectedTarget,
    handler_body,
    header_identify,
    hosted_conformance_service,
    portal_target,
)


def flask_app(stepup: StepUp) -> Flask:
    app = Flask("conformance")
    stepup.init_app(app)
    for path, scope in PROTECTED_ROUTES.items():

        def add(path: str = path, scope: str = scope) -> None:
            @app.post(path, endpoint=path)
            @requires_scope(scope)
            def handler() -> Any:
                return jsonify(handler_body(g.stepup.principal, g.stepup.grant, scope))

        add()
    return app


class TestFlaskDecorator(ProtectedRouteSuite):
    adapter = "flask (werkzeug)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        with hosted_conformance_service(tmp_path) as (hosted, store):
            app = flask_app(StepUp(identify=header_identify, hosted=hosted))
            with serve_werkzeug(app) as base_url:
                yield portal_target(base_url, hosted.service, store, hosted.portal)
