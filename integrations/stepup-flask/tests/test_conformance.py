"""stepup's protected-route conformance suite against the Flask decorator, the application
(``stepup_flask_testserver``, beside this file) served by Werkzeug's threaded server (Flask's
own), the service in a portal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stepup_flask import StepUp
from stepup_flask_testserver import flask_app, serve_werkzeug

from stepup_core.testing.protected import (
    ProtectedRouteSuite,
    ProtectedTarget,
    header_identify,
    hosted_conformance_service,
    portal_target,
)


class TestFlaskDecorator(ProtectedRouteSuite):
    adapter = "flask (werkzeug)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        with hosted_conformance_service(tmp_path) as (hosted, store):
            app = flask_app(StepUp(identify=header_identify, hosted=hosted))
            with serve_werkzeug(app) as base_url:
                yield portal_target(base_url, hosted.service, store, hosted.portal)
