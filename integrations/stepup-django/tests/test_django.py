"""What is particular to Django: the protocol included in the URLconf (identify given Django's
request), a project configured from settings.STEPUP, a plain identify run off the event loop for
async views, and failing closed when stepup is not configured."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stepup_django
from django.core.asgi import get_asgi_application
from django.test import override_settings
from stepup_django_testproject import ASYNC, SYNC, serve_django_wsgi

from stepup_core.models import Principal
from stepup_core.server import document_for
from stepup_core.testing.protected import header_identify, hosted_conformance_service
from stepup_core.testing.servers import serve_asgi

ALICE = {"Authorization": "Bearer alice:s1"}
SEEN: list[tuple[type, str]] = []


def recording_identify(request: Any) -> Principal | None:
    """A plain function, as a Django project writes it (it could use the ORM)."""
    SEEN.append((type(request), threading.current_thread().name))
    return Principal("alice", "s1") if request.headers.get("Authorization") == ALICE["Authorization"] else None


async def test_the_protocol_is_included_in_the_urlconf(tmp_path: Path) -> None:
    with hosted_conformance_service(tmp_path) as (hosted, _):
        stepup_django.configure(stepup_django.StepUp(identify=header_identify, hosted=hosted))
        try:
            with serve_django_wsgi() as base_url:
                async with aiohttp.ClientSession() as http:
                    async with http.get(base_url + "/stepup/openapi.json") as resp:
                        assert resp.status == 200
                        assert await resp.json() == document_for(hosted.service, "/stepup")
                    async with http.post(base_url + "/stepup/check", json={"scope": "user:update"}) as resp:
                        assert resp.status == 401
                        assert (await resp.json())["code"] == "unauthenticated"
                    check = {"scope": "user:update"}
                    async with http.post(base_url + "/stepup/check", json=check, headers=ALICE) as resp:
                        assert resp.status == 200  # no CSRF token needed: a JSON body
                        assert (await resp.json())["isRequired"] is True
                    async with http.delete(base_url + "/stepup/grants", headers=ALICE) as resp:
                        assert resp.status == 200
                        assert await resp.json() == {"revoked": 0}
                    async with http.get(base_url + "/stepup/nothing") as resp:
                        assert resp.status == 404
                        assert resp.headers["Content-Type"] == "application/problem+json; charset=utf-8"
        finally:
            stepup_django.configure(None)


async def test_a_project_configured_by_settings(tmp_path: Path) -> None:
    options = {
        "CONFIG": {"store": f"sqlite:{tmp_path / 'stepup.sqlite3'}", "secret_key": secrets.token_hex(32)},
        "IDENTIFY": f"{__name__}.recording_identify",
    }
    SEEN.clear()
    with override_settings(STEPUP=options):
        stepup_django.configure(None)
        try:
            async with serve_asgi(get_asgi_application()) as base_url, aiohttp.ClientSession() as http:
                async with http.post(base_url + ASYNC + "/profile", headers=ALICE) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["code"] == "insufficient_user_authentication"
                async with http.post(base_url + "/stepup/check", json={"scope": "user:update"}, headers=ALICE) as resp:
                    assert resp.status == 200
            built = stepup_django.get_stepup()
            assert built.hosted is not None
        finally:
            stepup_django.get_stepup().close()
            stepup_django.configure(None)
    # Django's request each time; for the async view the plain identify ran off the event loop.
    assert SEEN and all(kind.__name__ == "ASGIRequest" for kind, _ in SEEN)
    assert all(thread != "MainThread" for _, thread in SEEN)


async def test_without_configuration_a_guarded_view_fails_closed() -> None:
    stepup_django.configure(None)
    with override_settings(STEPUP={}), serve_django_wsgi() as base_url:
        async with aiohttp.ClientSession() as http, http.post(base_url + SYNC + "/profile", headers=ALICE) as resp:
            assert resp.status == 500
            assert (await resp.json())["code"] == "config_error"
    stepup_django.configure(None)


def test_the_decorator_keeps_async_views_async() -> None:
    import inspect

    from stepup_django_testproject import async_view, sync_view

    assert inspect.iscoroutinefunction(async_view("user:update"))
    assert not inspect.iscoroutinefunction(sync_view("user:update"))
    with pytest.raises(Exception, match="not a valid scope"):
        stepup_django.requires_scope("Not A Scope")
