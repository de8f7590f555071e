"""``path("stepup/", include("stepup_django.urls"))``: every stepup route, at ``[server] prefix``.

The view is exempt from Django's CSRF check: every protocol body must be declared
``application/json`` and the bodiless changes are ``DELETE``s, none of which a page on another
origin can send without a CORS preflight, which stepup does not grant.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from . import get_stepup

app_name = "stepup"


def _protocol(request: HttpRequest, rest: str = "") -> HttpResponse:
    return get_stepup().protocol_view(request)


protocol = csrf_exempt(_protocol)


urlpatterns = [re_path(r"^(?P<rest>.*)\Z", protocol, name="protocol")]
