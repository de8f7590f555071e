"""Errors on the wire: ``application/problem+json`` (RFC 9457) with a stable ``code``.

Every error a stepup route answers goes through :func:`problem_answer` (a framework-neutral
:class:`~stepup_core.server.http.Answer`; :func:`problem_response` is the same as an aiohttp
response). The body holds
``type``, ``title``, ``status``, ``detail`` and ``code``, then the error's own details
(``errors`` for validation, ``check`` for step-up, ``retryAfter`` for rate limits). A step-up
refusal also carries the RFC 9470 ``WWW-Authenticate`` challenge; a rate limit ``Retry-After``.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any

import attrs
from multidict import CIMultiDictProxy

from ..errors import (
    HttpMethodNotAllowed,
    NotFound,
    RetryLater,
    StepUpError,
    StepUpRequired,
    Unauthenticated,
)
from ..serialization import unstructure
from .http import Answer, Request

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("stepup.server")

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:stepup:problem:"
#: ``error_description`` of the RFC 9470 challenge (a fixed text: clients match on ``error``).
STEP_UP_DESCRIPTION = "Step-up authentication is required for this action"

_BASE_MEMBERS = frozenset({"type", "title", "status", "detail", "code"})
# RFC 6750 section 3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E.
_NOT_HEADER_SAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class RouteNotFound(NotFound):
    """No stepup route at this path."""

    code = "not_found"
    title = "Not found"


class InternalError(StepUpError):
    """Anything stepup did not raise on purpose. The detail never says more than this."""

    code = "server_error"
    status = 500
    title = "Internal server error"


def header_safe(text: str) -> str:
    """``text`` reduced to the characters RFC 6750 allows inside a challenge's quoted values."""
    return _NOT_HEADER_SAFE.sub("", text)


def step_up_challenge(scope: str, acr_values: tuple[str, ...] = (), max_age: float | None = None) -> str:
    """The RFC 9470 / RFC 6750 ``WWW-Authenticate`` value for a missing step-up; ``acr_values``
    and ``max_age`` (RFC 9470 section 3) say what authentication would satisfy."""
    challenge = (
        f'Bearer error="insufficient_user_authentication", '
        f'error_description="{STEP_UP_DESCRIPTION}", scope="{header_safe(scope)}"'
    )
    if acr_values:
        challenge += f', acr_values="{header_safe(" ".join(acr_values))}"'
    if max_age is not None:
        challenge += f', max_age="{math.floor(max_age)}"'
    return challenge


def _wire(value: Any) -> Any:
    if attrs.has(type(value)):
        return unstructure(value)
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_wire(v) for v in value]
    return unstructure(value)


#: What a caller reads for server-side failures: their own messages name hosts, files and
#: exceptions, which are for the log, not for the caller.
_PUBLIC_5XX_DETAIL = {
    "store_unavailable": "the step-up service cannot reach its store right now; try again shortly",
    "delivery_failed": "the code could not be delivered; try again later or choose another method",
    "provider_unavailable": "a service this method relies on is unavailable; try again later or choose another method",
}
_GENERIC_5XX_DETAIL = "the server could not complete the request; the error has been logged"


def public_detail(error: StepUpError) -> str:
    if error.status < 500:
        return error.message
    return _PUBLIC_5XX_DETAIL.get(error.code, _GENERIC_5XX_DETAIL)


def problem_body(error: StepUpError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + error.code,
        "title": error.title,
        "status": error.status,
        "detail": public_detail(error),
        "code": error.code,
    }
    if error.status >= 500:
        return body
    for key, value in error.details.items():
        if key not in _BASE_MEMBERS:
            body[key] = _wire(value)
    if isinstance(error, StepUpRequired) and error.check is not None:
        body["check"] = _wire(error.check)
    return body


def problem_headers(error: StepUpError) -> dict[str, str]:
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if isinstance(error, StepUpRequired):
        headers["WWW-Authenticate"] = step_up_challenge(error.scope, error.acr_values, error.max_age)
    elif isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="stepup"'
    retry_after = error.retry_after if isinstance(error, RetryLater) else None
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    allowed = error.details.get("allowed")
    if isinstance(error, HttpMethodNotAllowed) and isinstance(allowed, list):
        headers["Allow"] = ", ".join(allowed)
    return headers


PROBLEM_HEADER_VALUE = PROBLEM_CONTENT_TYPE + "; charset=utf-8"


def problem_answer(error: StepUpError) -> Answer:
    """The ``application/problem+json`` answer for a stepup error."""
    body = json.dumps(problem_body(error), separators=(",", ":")).encode()
    headers = (("Content-Type", PROBLEM_HEADER_VALUE), *problem_headers(error).items())
    return Answer(error.status, body, headers)


def problem_response(error: StepUpError) -> web.Response:
    """The ``application/problem+json`` answer for a stepup error, as an aiohttp response."""
    from aiohttp import web

    answer = problem_answer(error)
    return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))


def internal_error() -> InternalError:
    return InternalError(_GENERIC_5XX_DETAIL)


# --- HTML pages for the browser leg of redirect methods ------------------------------------

HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
code{{background:#f2f2f2;padding:0 .25rem}}</style></head>
<body><h1>{title}</h1><p>{message}</p>{extra}</body>
</html>
"""


def html_page(title: str, message: str, *, status: int = 200, extra: str = "", script: str = "") -> Answer:
    """An HTML page for a person; ``script`` is a ``<script src>`` tag of this server's own (the
    page's policy then allows scripts from its origin, never inline code)."""
    text = _PAGE.format(title=html.escape(title), message=html.escape(message), extra=extra + script)
    headers = dict(HTML_HEADERS)
    if script:
        headers["Content-Security-Policy"] += "; script-src 'self'"
    return Answer(status, text.encode(), (("Content-Type", "text/html; charset=utf-8"), *headers.items()))


def problem_page(error: StepUpError) -> Answer:
    """A problem for a person in a browser: the same facts as the JSON body, escaped."""
    extra = f"<p>Error code: <code>{html.escape(error.code)}</code></p>"
    page = html_page(error.title, public_detail(error), status=error.status, extra=extra)
    present = {name.lower() for name, _ in page.headers}
    added = tuple((k, v) for k, v in problem_headers(error).items() if k.lower() not in present)
    return attrs.evolve(page, headers=page.headers + added)


def wants_html(request: Request | CIMultiDictProxy[str]) -> bool:
    """True when the caller is a browser (prefers ``text/html`` over JSON)."""
    headers = request.headers if isinstance(request, Request) else request
    accept = headers.get("Accept", "")
    if not accept:
        return False
    best_html = best_json = -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, quality)
        elif media in ("application/json", "application/problem+json") or media.endswith("+json"):
            best_json = max(best_json, quality)
    return best_html > 0 and best_html >= best_json


def log_unexpected(request: Request | web.BaseRequest, exc: BaseException) -> None:
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
