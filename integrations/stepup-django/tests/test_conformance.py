"""stepup's protected-route conformance suite against Django: the decorator on sync views
(Django's threaded WSGI server, as runserver uses), on async views (Django's ASGI handler under
uvicorn), and the Django REST framework permission; the service lives in a portal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import stepup_django
from django.core.asgi import get_asgi_application
from stepup_django_testproject import ASYNC, DRF, SYNC, serve_django_wsgi

from stepup_core.testing.protected import (
    ProtectedRouteSuite,
    ProtectedTarget,
    header_identify,
    hosted_conformance_service,
    portal_target,
)
from stepup_core.testing.servers import serve_asgi


@contextmanager
def configured(tmp_path: Path) -> Iterator[tuple[stepup_django.StepUp, object, object]]:
    with hosted_conformance_service(tmp_path) as (hosted, store):
        stepup = stepup_django.StepUp(identify=header_identify, hosted=hosted)
        stepup_django.configure(stepup)
        try:
            yield stepup, hosted, store
        finally:
            stepup_django.configure(None)


class TestDjangoSyncViews(ProtectedRouteSuite):
    adapter = "django sync (wsgi)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        with configured(tmp_path) as (_, hosted, store), serve_django_wsgi() as base_url:
            yield portal_target(base_url + SYNC, hosted.service, store, hosted.portal)  # type: ignore[attr-defined]


class TestDjangoAsyncViews(ProtectedRouteSuite):
    adapter = "django async (asgi)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        with configured(tmp_path) as (_, hosted, store):
            async with serve_asgi(get_asgi_application()) as base_url:
                yield portal_target(base_url + ASYNC, hosted.service, store, hosted.portal)  # type: ignore[attr-defined]


class TestDjangoRestFramework(ProtectedRouteSuite):
    adapter = "django rest framework"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        with configured(tmp_path) as (_, hosted, store), serve_django_wsgi() as base_url:
            yield portal_target(base_url + DRF, hosted.service, store, hosted.portal)  # type: ignore[attr-defined]
