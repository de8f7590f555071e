"""The framework-neutral shape of one stepup exchange: a :class:`Request` in, an :class:`Answer` out.

Every route handler of the protocol works on these two small values, so the same table serves
aiohttp (:func:`stepup_core.server.mount`), any ASGI server (:mod:`stepup_core.server.asgi`) and
WSGI (:mod:`stepup_core.server.wsgi`). An adapter builds a :class:`Request` from its framework's
request (headers, query, path parameters, a body reader with a size limit) and writes the
:class:`Answer` back. Nothing here imports a web framework.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import ConfigError, MalformedRequest, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from ..models import Principal
from ..serialization import structure, unstructure

if TYPE_CHECKING:
    from ..service import StepUpService

T = TypeVar("T")

#: The application's ``identify``: who is calling, or None for an anonymous caller. It receives
#: the framework's own request (aiohttp's ``web.Request``, Starlette's, Django's, Flask's) or,
#: where there is no framework (the bare ASGI and WSGI adapters), a :class:`Request`. Each has
#: ``headers.get(name)``, so an identify that reads a header works everywhere.
Identify = Callable[[Any], Awaitable["Principal | None"]]
#: An ``identify`` as the guards accept it: a coroutine function, or a plain function (Django and
#: Flask read their sessions synchronously).
AnyIdentify = Identify | Callable[[Any], "Principal | None"]

#: The header that carries an elevated access token.
TOKEN_HEADER = "X-Elevated-Access-Token"
JSON_CONTENT_TYPE = "application/json"
JSON_HEADER_VALUE = "application/json; charset=utf-8"
NO_STORE = ("Cache-Control", "no-store")

#: Reads the body: ``await read(limit)`` answers at most ``limit`` bytes, or raises
#: :class:`~stepup_core.errors.PayloadTooLarge` once the body is longer.
BodyReader = Callable[[int], Awaitable[bytes]]


async def _no_body(limit: int) -> bytes:
    return b""


def headers_from(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> CIMultiDictProxy[str]:
    """Case-insensitive, multi-valued headers from name/value pairs or a mapping."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return CIMultiDictProxy(CIMultiDict(items))


@attrs.define
class Mounted:
    """One stepup protocol mounted somewhere: the service, the application's ``identify`` and the
    path prefix (``/stepup``). Every adapter holds one and hands it to each request."""

    service: StepUpService
    identify: AnyIdentify
    prefix: str
    #: What route handlers keep per mount (the browser files, read once).
    cache: dict[str, Any] = attrs.field(factory=dict)
    #: Builds the OpenAPI document of the mounted routes (set by the adapter: the route table
    #: does not import the document builder, which reads the route table).
    document: Callable[[], dict[str, Any]] | None = None
    #: Identifies operators for the admin API (None: the admin API is not mounted here).
    admin_identify: AnyIdentify | None = None


@attrs.define(eq=False)
class Request:
    """One HTTP request, as the protocol's handlers see it.

    :param method: the HTTP method, upper case.
    :param path: the full path (with the prefix), percent-decoded.
    :param headers: case-insensitive, multi-valued.
    :param query: the first value of each query parameter.
    :param params: the path parameters of the matched route (``{id}``).
    :param mounted: the service, ``identify`` and prefix serving this request.
    :param read_body: the body reader (see :data:`BodyReader`).
    :param native: the framework's request object, handed to ``identify`` (None: this object).
    :param scheme: ``http`` or ``https`` as the server saw it.
    :param server: the local socket address (host, port) the request arrived on, when known.
    """

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    mounted: Mounted
    query: Mapping[str, str] = attrs.field(factory=dict)
    params: Mapping[str, str] = attrs.field(factory=dict)
    read_body: BodyReader = _no_body
    native: Any = None
    scheme: str = "http"
    server: tuple[str, int] | None = None

    @property
    def service(self) -> StepUpService:
        return self.mounted.service

    @property
    def prefix(self) -> str:
        return self.mounted.prefix

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies of the ``Cookie`` header (for an ``identify`` that reads a session cookie)."""
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.getall("Cookie", []):
            try:
                jar.load(header)
            except Exception:  # noqa: BLE001, S112 - a malformed cookie is no cookie
                continue
        return {name: morsel.value for name, morsel in jar.items()}


@attrs.frozen
class Answer:
    """One HTTP answer: status, headers (with the content type) and the body bytes."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def content_type(self) -> str | None:
        value = self.header("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


def json_answer(value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Answer:
    """``value`` (attrs classes included) as camelCase JSON, never cached."""
    body = json.dumps(unstructure(value), separators=(",", ":")).encode()
    return Answer(status, body, (("Content-Type", JSON_HEADER_VALUE), NO_STORE, *(headers or {}).items()))


def empty_answer(status: int = 204) -> Answer:
    return Answer(status, b"", (NO_STORE,))


# --- the caller ----------------------------------------------------------------------------


def identify_argument(request: Request) -> Any:
    """What ``identify`` receives: the framework's request, or the :class:`Request` itself."""
    return request.native if request.native is not None else request


async def principal_from_identify(identify: AnyIdentify, argument: Any) -> Principal:
    """Run ``identify`` (a coroutine function, or a plain function for frameworks whose
    sessions are read synchronously); 401 ``unauthenticated`` when it answers None."""
    principal = identify(argument)
    if inspect.isawaitable(principal):
        principal = await principal
    if principal is None:
        raise Unauthenticated("sign in first: this route needs the application's session")
    if not isinstance(principal, Principal):
        raise TypeError(f"identify() must return a Principal or None, not {type(principal).__name__}")
    return principal


async def principal_of(request: Request) -> Principal:
    """The caller, from the application's ``identify``; 401 ``unauthenticated`` when anonymous."""
    return await principal_from_identify(request.mounted.identify, identify_argument(request))


def elevated_token(request: Request) -> str | None:
    value = request.headers.get(TOKEN_HEADER, "").strip()
    return value or None


# --- the body ------------------------------------------------------------------------------


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or (media.startswith("application/") and media.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse an object with a key twice: parsers disagree on which one wins, and a proxy or a
    log that reads the first while stepup reads the last is a confusion worth closing."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def declared_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("Content-Length")
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise MalformedRequest("the Content-Length header is not a number") from None
    if value < 0:
        raise MalformedRequest("the Content-Length header is negative")
    return value


def parse_json(raw: bytes) -> Any:
    """JSON as the protocol accepts it: UTF-8 without a byte order mark, no NaN or Infinity, no
    repeated key, no lone surrogate; 400 ``malformed_request`` otherwise."""
    if not raw.strip():
        raise MalformedRequest("the request body is empty; send a JSON object")
    # RFC 8259 section 8.1: JSON between systems is UTF-8, without a byte order mark. Python's
    # json.loads would guess UTF-16 or UTF-32 from bytes and skip a BOM; stepup does neither.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the request body is not UTF-8; send JSON encoded as UTF-8") from None
    if text.startswith("\ufeff"):
        raise MalformedRequest("the request body starts with a byte order mark; send UTF-8 without one")
    if "\x00" in text:  # never in JSON text; the mark of UTF-16 or UTF-32 sent without a BOM
        raise MalformedRequest("the request body holds NUL bytes (UTF-16 or UTF-32?); send JSON encoded as UTF-8")
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        # JSON can spell a lone surrogate (\ud800), which is no Unicode text: no method could
        # hash it and no store encode it. Re-encoding finds one anywhere in the document.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise MalformedRequest("the request body is nested too deeply") from None
    except UnicodeError:
        raise MalformedRequest("the request body is not valid UTF-8 JSON (or holds a lone surrogate)") from None
    except ValueError as exc:
        raise MalformedRequest(f"the request body is not valid JSON: {exc}") from None
    return value


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, read with a hard size limit.

    413 ``payload_too_large`` past ``limit`` bytes (by Content-Length, or while reading a
    body sent without one), 415 ``unsupported_media_type`` when the body is not declared
    JSON, 400 ``malformed_request`` when it is not UTF-8 (or starts with a byte order mark),
    does not parse, or repeats a key in an object.
    """
    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}", limit=limit)
    content_type = request.headers.get("Content-Type", "")
    if not _is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: {JSON_CONTENT_TYPE}"
            + (f" (got {content_type[:80]!r})" if content_type else "")
        )
    return parse_json(await request.read_body(limit))


async def read_model(request: Request, cls: type[T]) -> T:
    """Read and structure a request body; 422 ``validation_error`` names every bad field."""
    data = await read_json(request, request.service.config.server.max_body_bytes)
    return structure(data, cls)


# --- prefixes ------------------------------------------------------------------------------


def normalise_prefix(prefix: str) -> str:
    cleaned = "/" + prefix.strip().strip("/")
    if cleaned == "/":
        raise ConfigError("the stepup prefix must be a path below the root, like '/stepup'")
    return cleaned


def adopt_prefix(service: StepUpService, prefix: str | None) -> str:
    """The prefix to mount at (default ``server.prefix``); the service's configuration follows it,
    since redirect callbacks are built from the configured prefix."""
    chosen = normalise_prefix(prefix or service.config.server.prefix)
    if chosen != service.config.server.prefix:
        service.config = attrs.evolve(service.config, server=attrs.evolve(service.config.server, prefix=chosen))
    return chosen


def payload_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes", limit=limit)
