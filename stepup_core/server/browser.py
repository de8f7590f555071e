"""What the browser needs from the server: the browser client, each method's browser half, CORS.

- ``GET {prefix}/static/{name}``: the files of the browser client (``stepup.js``, ``react.js``,
  ``callback.js``, the built-in prompt ``prompt.js`` and its message catalogs ``prompt-<locale>.js``)
  from ``stepup_core/static``, the same files the npm-style package exports.
- ``GET {prefix}/methods/{name}/browser.js``: a method's browser half, the file its verifier
  names in ``browser_module``. ``GET {prefix}/methods`` lists its URL in ``browserModule``.
- Both answer ``text/javascript`` with a strong ``ETag`` (``If-None-Match`` gets 304) and
  ``Cache-Control: no-cache``: a browser keeps the file and revalidates it.
- CORS: with ``[server] cors_origins`` set, pages on those exact origins may call the stepup
  routes (preflights answered, ``WWW-Authenticate`` and ``Retry-After`` exposed).
  :func:`preflight` and :func:`with_cors` do it for every adapter (aiohttp's as a middleware).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any, Protocol

import attrs

from ..errors import NotFound, OriginNotAllowed
from .http import TOKEN_HEADER, Answer, Request
from .problems import problem_answer

JAVASCRIPT = "text/javascript"
#: The browser client's files served under ``{prefix}/static/``.
STATIC_FILES = ("stepup.js", "react.js", "callback.js", "prompt.js", "prompt-en.js", "prompt-fr.js", "prompt-de.js")
#: Headers a page may read from a cross-origin answer, besides the CORS-safelisted ones.
EXPOSED_HEADERS = ("WWW-Authenticate", "Retry-After", "Location", "ETag", "Date")
ALLOWED_METHODS = ("GET", "POST", "PATCH", "DELETE")
PREFLIGHT_MAX_AGE = 600
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class ModuleSource(Protocol):
    """What ``browser_module`` holds: a file to read (``importlib.resources`` Traversable, a Path)."""

    def read_bytes(self) -> bytes: ...


def browser_module_of(verifier: object) -> ModuleSource | None:
    """The verifier's optional ``browser_module``, or None when it declares none."""
    source = getattr(verifier, "browser_module", None)
    return source if source is not None and callable(getattr(source, "read_bytes", None)) else None


def module_url(prefix: str, method: str) -> str:
    """Where the server serves a method's browser half (a path below the server's origin)."""
    return f"{prefix}/methods/{method}/browser.js"


@attrs.frozen
class Asset:
    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> Asset:
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@attrs.define
class AssetCache:
    """Files read once per server, by key."""

    assets: dict[str, Asset] = attrs.field(factory=dict)

    def get(self, key: str, read: Callable[[], bytes]) -> Asset:
        asset = self.assets.get(key)
        if asset is None:
            asset = self.assets[key] = Asset.of(read())
        return asset


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def script_answer(request: Request, asset: Asset) -> Answer:
    headers = (
        ("ETag", asset.etag),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    )
    if _etag_matches(request, asset.etag):
        return Answer(304, b"", headers)
    return Answer(200, asset.body, (("Content-Type", f"{JAVASCRIPT}; charset=utf-8"), *headers))


def _cache(request: Request) -> AssetCache:
    """Files are read once per mount."""
    cache = request.mounted.cache.get("assets")
    if not isinstance(cache, AssetCache):
        cache = request.mounted.cache["assets"] = AssetCache()
    return cache


async def static_file(request: Request) -> Answer:
    name = request.params["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"no browser file {name[:60]!r}; the files are {', '.join(STATIC_FILES)}")
    source = files("stepup_core") / "static" / name
    return script_answer(request, _cache(request).get(f"static:{name}", source.read_bytes))


async def method_module(request: Request) -> Answer:
    name = request.params["name"]
    verifier = request.service.verifiers.get(name)
    source = browser_module_of(verifier) if verifier is not None else None
    if source is None:
        raise NotFound(f"no browser module for method {name[:60]!r}")
    return script_answer(request, _cache(request).get(f"method:{name}", source.read_bytes))


# --- CORS ----------------------------------------------------------------------------------


def is_preflight(method: str, headers: Any) -> bool:
    return method == "OPTIONS" and "Access-Control-Request-Method" in headers


def preflight(method: str, headers: Any, allowed: frozenset[str]) -> Answer | None:
    """The answer to a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``), or
    None for any other request. From a listed origin 204 with the grants; from any other 403
    ``origin_not_allowed``, without CORS headers, so the browser refuses the call."""
    if not is_preflight(method, headers):
        return None
    origin = headers.get("Origin")
    if origin not in allowed:
        refusal = problem_answer(
            OriginNotAllowed(
                f"origin {str(origin)[:100]!r} may not call this server from a web page; "
                "list it in [server] cors_origins"
            )
        )
        return attrs.evolve(refusal, headers=(*refusal.headers, ("Vary", "Origin")))
    return Answer(204, b"", tuple(_preflight_headers(headers, str(origin)).items()))


def cors_headers(existing_vary: str | None, origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    """The headers an answer to ``origin`` gets: ``Vary: Origin`` always; for a listed origin
    ``Access-Control-Allow-Origin`` with that origin (never ``*``), credentials and the
    exposed headers. An unlisted origin's page cannot read the answer."""
    vary = [v.strip() for v in (existing_vary or "").split(",") if v.strip()]
    out = {"Vary": ", ".join(vary if "Origin" in vary else [*vary, "Origin"])}
    if origin is not None and origin in allowed:
        out["Access-Control-Allow-Origin"] = origin
        out["Access-Control-Allow-Credentials"] = "true"
        out["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    return out


def with_cors(answer: Answer, origin: str | None, allowed: frozenset[str]) -> Answer:
    """``answer`` with :func:`cors_headers` (replacing any ``Vary`` it had)."""
    added = cors_headers(answer.header("Vary"), origin, allowed)
    replaced = {name.lower() for name in added}
    kept = tuple((k, v) for k, v in answer.headers if k.lower() not in replaced)
    return attrs.evolve(answer, headers=(*kept, *added.items()))


def _preflight_headers(headers: Any, origin: str) -> dict[str, str]:
    asked = headers.get("Access-Control-Request-Headers", "")
    names = [n.strip().lower() for n in asked.split(",") if n.strip()]
    allowed_headers = [n for n in names if _HEADER_NAME.match(n)] or [
        "authorization",
        "content-type",
        TOKEN_HEADER.lower(),
    ]
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
        "Access-Control-Allow-Headers": ", ".join(allowed_headers),
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "Cache-Control": "no-store",
    }


# --- the callback page of redirect methods -------------------------------------------------


def callback_script_tag(request: Request, method: str) -> str:
    """The ``<script>`` that tells the page which opened the sign-in window that it finished.

    The script (``{prefix}/static/callback.js``, no inline code) posts ``{type:
    "stepup:callback", method}`` to ``window.opener``, once per allowed target origin: the
    callback page's own origin and each of ``[server] cors_origins``. ``postMessage`` delivers a
    message only when the opener's origin is exactly the target, so no other page hears it.
    The message carries no token: the opener then polls its challenge for the grant.
    """
    prefix = request.prefix
    targets = list(request.service.config.server.cors_origins)
    return (
        f'<script src="{html.escape(prefix)}/static/callback.js" '
        f'data-method="{html.escape(method)}" '
        f"data-targets='{html.escape(json.dumps(targets), quote=True)}'></script>"
    )
