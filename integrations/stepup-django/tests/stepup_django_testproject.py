"""A small Django project for the tests: settings, a URLconf with the protocol and the guarded
views (sync, async and Django REST framework), each family under its own path, and Django's own
threaded WSGI server to serve it."""

from __future__ import annotations

import secrets
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from stepup_core.testing.protected import PROTECTED_ROUTES, handler_body
from stepup_core.testing.servers import serving_in_thread

#: Where each family of guarded views lives; the conformance targets' base URLs end with these.
SYNC, ASYNC, DRF = "/sync", "/async", "/drf"


def sync_view(scope: str) -> Any:
    from stepup_django import requires_scope

    @csrf_exempt  # a bearer-token API: no cookies for a forged request to ride on
    @requires_scope(scope)
    def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse(handler_body(request.stepup.principal, request.stepup.grant, scope))  # type: ignore[attr-defined]

    return view


def async_view(scope: str) -> Any:
    from stepup_django import requires_scope

    @csrf_exempt
    @requires_scope(scope)
    async def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse(handler_body(request.stepup.principal, request.stepup.grant, scope))  # type: ignore[attr-defined]

    return view


def drf_view(scope: str) -> Any:
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from stepup_django.drf import RequireScope

    class Guarded(APIView):
        authentication_classes: list[Any] = []
        permission_classes = [RequireScope(scope)]

        def post(self, request: Any) -> Response:
            return Response(handler_body(request.stepup.principal, request.stepup.grant, scope))

    return Guarded.as_view()


def urlconf() -> types.ModuleType:
    module = types.ModuleType("stepup_test_urls")
    patterns = [path("stepup/", include("stepup_django.urls"))]
    for route, scope in PROTECTED_ROUTES.items():
        patterns.append(path(SYNC.lstrip("/") + route, sync_view(scope)))
        patterns.append(path(ASYNC.lstrip("/") + route, async_view(scope)))
        patterns.append(path(DRF.lstrip("/") + route, drf_view(scope)))
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    return module


def setup() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_hex(32),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        MIDDLEWARE=[
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        DATABASES={},
        ROOT_URLCONF=None,
        REST_FRAMEWORK={
            "EXCEPTION_HANDLER": "stepup_django.drf.exception_handler",
            "UNAUTHENTICATED_USER": None,
        },
        USE_TZ=True,
    )
    django.setup()
    settings.ROOT_URLCONF = urlconf()


class _Server(ThreadedWSGIServer):
    request_queue_size = 128  # the suite sends 100 requests at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_django_wsgi() -> Iterator[str]:
    """Django's own threaded WSGI server (what runserver and LiveServerTestCase use)."""
    server = _Server(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.set_app(get_wsgi_application())
    with serving_in_thread(server) as base_url:
        yield base_url
