"""What every stepup route shares: the keys on the application, the caller, the body, the answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ..errors import ConfigError, MalformedRequest, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from ..models import Principal
from ..serialization import structure, unstructure

if TYPE_CHECKING:
    from ..service import StepUpService

T = TypeVar("T")

#: The application's ``identify``: who is calling, or None for an anonymous caller.
Identify = Callable[[web.Request], Awaitable["Principal | None"]]

SERVICE_KEY: web.AppKey[StepUpService] = web.AppKey("stepup_service")
IDENTIFY_KEY: web.AppKey[Identify] = web.AppKey("stepup_identify")
PREFIX_KEY: web.AppKey[str] = web.AppKey("stepup_prefix")
#: Builds the OpenAPI document of the mounted routes (set by ``mount``: the route table does not
#: import the document builder, which reads the route table).
DOCUMENT_KEY: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("stepup_openapi_document")

#: The header that carries an elevated access token.
TOKEN_HEADER = "X-Elevated-Access-Token"
JSON_CONTENT_TYPE = "application/json"
_READ_CHUNK = 16 * 1024


def service_of(request: web.Request) -> StepUpService:
    try:
        return request.config_dict[SERVICE_KEY]
    except KeyError:
        raise ConfigError(
            "stepup is not mounted on this application: call stepup_core.server.mount(app, service, identify)"
        ) from None


def mounted(request: web.Request) -> tuple[StepUpService, Identify]:
    """The service and ``identify`` that ``mount`` put on the application, in one lookup."""
    config = request.config_dict
    try:
        return config[SERVICE_KEY], config[IDENTIFY_KEY]
    except KeyError:
        raise ConfigError(
            "stepup is not mounted on this application: call stepup_core.server.mount(app, service, identify)"
        ) from None


async def principal_of(request: web.Request, identify: Identify | None = None) -> Principal:
    """The caller, from the application's ``identify``; 401 ``unauthenticated`` when anonymous."""
    if identify is None:
        identify = mounted(request)[1]
    principal = await identify(request)
    if principal is None:
        raise Unauthenticated("sign in first: this route needs the application's session")
    if not isinstance(principal, Principal):
        raise TypeError(f"identify() must return a Principal or None, not {type(principal).__name__}")
    return principal


def elevated_token(request: web.Request) -> str | None:
    value = request.headers.get(TOKEN_HEADER, "").strip()
    return value or None


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


async def read_json(request: web.Request, limit: int) -> Any:
    """The request body as JSON, read with a hard size limit.

    413 ``payload_too_large`` past ``limit`` bytes (by Content-Length, or while reading a
    body sent without one), 415 ``unsupported_media_type`` when the body is not declared
    JSON, 400 ``malformed_request`` when it is not UTF-8 (or starts with a byte order mark),
    does not parse, or repeats a key in an object.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}", limit=limit)
    content_type = request.headers.get("Content-Type", "")
    if not _is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: {JSON_CONTENT_TYPE}"
            + (f" (got {content_type[:80]!r})" if content_type else "")
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
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


async def read_model(request: web.Request, cls: type[T]) -> T:
    """Read and structure a request body; 422 ``validation_error`` names every bad field."""
    data = await read_json(request, service_of(request).config.server.max_body_bytes)
    return structure(data, cls)


def json_response(value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(unstructure(value), separators=(",", ":")),
        content_type=JSON_CONTENT_TYPE,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )
