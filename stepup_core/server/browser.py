"""What the browser needs from the server: the browser client, each method's browser half, CORS.

- ``GET {prefix}/static/{name}``: the files of the browser client (``stepup.js``, ``react.js``,
  ``callback.js``, the built-in prompt ``prompt.js`` and its message catalogs ``prompt-<locale>.js``)
  from ``stepup_core/static``, the same files the npm-style package exports.
- ``GET {prefix}/methods/{name}/browser.js``: a method's browser half, the file its verifier
  names in ``browser_module``. ``GET {prefix}/methods`` lists its URL in ``browserModule``.
- Both answer ``text/javascript`` with a strong ``ETag`` (``If-None-Match`` gets 304) and
  ``Cache-Control: no-cache``: a browser keeps the file and revalidates it.
- ``cors_middleware``: with ``[server] cors_origins`` set, pages on those exact origins may call
  the stepup routes (preflights answered, ``WWW-Authenticate`` and ``Retry-After`` exposed).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from importlib.resources import files
from typing import Any, Protocol

import attrs
from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import NotFound, OriginNotAllowed
from .http import PREFIX_KEY, TOKEN_HEADER, service_of
from .problems import problem_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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


ASSETS_KEY: web.AppKey[AssetCache] = web.AppKey("stepup_assets", AssetCache)


def _etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def script_response(request: web.Request, asset: Asset) -> web.Response:
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if _etag_matches(request, asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=JAVASCRIPT, charset="utf-8", headers=headers)


def _cache(request: web.Request) -> AssetCache:
    cache = request.config_dict.get(ASSETS_KEY)
    if cache is None:  # mounted by hand without mount(): read on every request
        return AssetCache()
    return cache


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"no browser file {name[:60]!r}; the files are {', '.join(STATIC_FILES)}")
    source = files("stepup_core") / "static" / name
    return script_response(request, _cache(request).get(f"static:{name}", source.read_bytes))


async def method_module(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    verifier = service_of(request).verifiers.get(name)
    source = browser_module_of(verifier) if verifier is not None else None
    if source is None:
        raise NotFound(f"no browser module for method {name[:60]!r}")
    return script_response(request, _cache(request).get(f"method:{name}", source.read_bytes))


# --- CORS ----------------------------------------------------------------------------------


def cors_middleware(origins: Iterable[str]) -> Middleware:
    """Let pages on ``origins`` (exact, normalised) call the stepup routes from another origin.

    A request from a listed origin gets ``Access-Control-Allow-Origin`` with that origin (never
    ``*``), ``Access-Control-Allow-Credentials: true`` and the exposed headers. A preflight
    (``OPTIONS`` with ``Access-Control-Request-Method``) from a listed origin is answered 204;
    from any other origin 403 ``origin_not_allowed``, without CORS headers, so the browser
    refuses the call. Other requests from unlisted origins are served without CORS headers:
    the browser does not let the page read the answer.
    """
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if preflight:
            if origin not in allowed:
                refusal = problem_response(
                    OriginNotAllowed(
                        f"origin {str(origin)[:100]!r} may not call this server from a web page; "
                        "list it in [server] cors_origins"
                    )
                )
                refusal.headers["Vary"] = "Origin"
                return refusal
            return web.Response(status=204, headers=_preflight_headers(request, str(origin)))
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and the like pass through with the headers
            _add_cors_headers(exc.headers, origin, allowed)
            raise
        _add_cors_headers(response.headers, origin, allowed)
        return response

    return cors


def _add_cors_headers(headers: Any, origin: str | None, allowed: frozenset[str]) -> None:
    vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    if "Origin" not in vary:
        headers["Vary"] = ", ".join([*vary, "Origin"])
    if origin is not None and origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)


def _preflight_headers(request: web.Request, origin: str) -> dict[str, str]:
    asked = request.headers.get("Access-Control-Request-Headers", "")
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


def callback_script_tag(request: web.Request, method: str) -> str:
    """The ``<script>`` that tells the page which opened the sign-in window that it finished.

    The script (``{prefix}/static/callback.js``, no inline code) posts ``{type:
    "stepup:callback", method}`` to ``window.opener``, once per allowed target origin: the
    callback page's own origin and each of ``[server] cors_origins``. ``postMessage`` delivers a
    message only when the opener's origin is exactly the target, so no other page hears it.
    The message carries no token: the opener then polls its challenge for the grant.
    """
    prefix = request.config_dict[PREFIX_KEY]
    targets = list(service_of(request).config.server.cors_origins)
    return (
        f'<script src="{html.escape(prefix)}/static/callback.js" '
        f'data-method="{html.escape(method)}" '
        f"data-targets='{html.escape(json.dumps(targets), quote=True)}'></script>"
    )
