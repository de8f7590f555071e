"""What is particular to Flask: the protocol served by the Flask application itself, identify
run in the request's thread with Flask's request and session, a RemoteGuard without any store,
and failing closed when stepup is not set up."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import flask
import pytest
from flask import Flask, g, jsonify
from stepup_flask import StepUp, requires_scope
from stepup_flask_testserver import serve_werkzeug

from stepup_core.introspection import credential_hash
from stepup_core.models import Principal
from stepup_core.remote import RemoteGuard
from stepup_core.server import build_app, document_for, serve_app
from stepup_core.testing.protected import (
    PROTECTED_ROUTES,
    ProtectedRouteSuite,
    ProtectedTarget,
    conformance_service,
    handler_body,
    header_identify,
    hosted_conformance_service,
    service_target,
)

CREDENTIAL = "sis_flask-test-credential-0000000000000000000000"


async def test_the_protocol_is_served_by_flask_and_identify_reads_flasks_session(tmp_path: Path) -> None:
    seen: list[Any] = []

    def identify(request: Any) -> Principal | None:  # a plain function reading Flask's session
        seen.append((type(request), flask.has_request_context()))
        user = flask.session.get("user")
        return None if user is None else Principal(user, "s1")

    with hosted_conformance_service(tmp_path) as (hosted, _):
        app = Flask("protocol")
        app.secret_key = secrets.token_hex(32)

        @app.post("/login/<user>")
        def login(user: str) -> Any:
            flask.session["user"] = user
            return jsonify({"user": user})

        StepUp(app, identify=identify, hosted=hosted)
        with serve_werkzeug(app) as base_url:
            # The session cookie is for 127.0.0.1: a jar that keeps cookies of IP addresses.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(base_url + "/stepup/openapi.json") as resp:
                    assert resp.status == 200
                    assert await resp.json() == document_for(hosted.service, "/stepup")
                async with http.post(base_url + "/stepup/check", json={"scope": "wallet:export"}) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["code"] == "unauthenticated"
                async with http.post(base_url + "/login/alice") as resp:
                    assert resp.status == 200
                async with http.post(base_url + "/stepup/check", json={"scope": "wallet:export"}) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["isRequired"] is True
                async with http.options(base_url + "/stepup/check") as resp:
                    assert resp.status == 405
                    assert resp.headers["Allow"] == "POST"
                async with http.post(
                    base_url + "/stepup/check", data=b"x" * 70000, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 413
                    assert (await resp.json())["code"] == "payload_too_large"
    assert seen[0] == (flask.Request, True)


async def test_without_stepup_a_guarded_view_fails_closed() -> None:
    app = Flask("bare")
    ran: list[bool] = []

    @app.post("/wallet/export")
    @requires_scope("wallet:export")
    def export() -> Any:
        ran.append(True)
        return jsonify({})

    with serve_werkzeug(app) as base_url:
        async with aiohttp.ClientSession() as http, http.post(
            base_url + "/wallet/export", headers={"Authorization": "Bearer alice:s1"}
        ) as resp:
            assert resp.status == 500
            assert (await resp.json())["code"] == "config_error"
    assert ran == []


class TestFlaskWithRemoteGuard(ProtectedRouteSuite):
    """A Flask application without the store asks a stepup server beside it."""

    adapter = "flask + remote"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        config = {"introspection": {"clients": {"flask": credential_hash(CREDENTIAL)}}}
        async with (
            conformance_service(tmp_path, config=config) as (service, store),
            serve_app(build_app(service, header_identify)) as sidecar,
        ):
            stepup = StepUp(identify=header_identify, gate=RemoteGuard(sidecar + "/stepup", CREDENTIAL))
            app = Flask("remote")
            stepup.init_app(app)
            for path, scope in PROTECTED_ROUTES.items():

                def add(path: str = path, scope: str = scope) -> None:
                    @app.post(path, endpoint=path)
                    @requires_scope(scope)
                    def handler() -> Any:
                        return jsonify(handler_body(g.stepup.principal, g.stepup.grant, scope))

                add()
            try:
                with serve_werkzeug(app) as base_url:
                    yield service_target(base_url, service, store)
            finally:
                stepup.close()
