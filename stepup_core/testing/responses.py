"""Check HTTP answers against stepup's own OpenAPI document (for tests; needs ``jsonschema``).

:class:`ResponseValidator` checks that each answer is documented (path, method, status,
content type) and that its JSON body matches the documented schema. Use it as an aiohttp
client middleware so every response a test receives is checked::

    validator = ResponseValidator(document, prefix="/stepup")
    client = TestClient(server, middlewares=[validator.middleware])

Answers from outside the prefix (the application's own routes) are checked only when they are
problems: they must match the ``Problem`` schema.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

_DOC_URI = "urn:stepup:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class ResponseMismatch(AssertionError):
    """An answer the document does not describe."""


@attrs.define
class ResponseValidator:
    document: dict[str, Any]
    prefix: str
    #: Every answer checked so far: (method, path, status).
    seen: list[tuple[str, str, int]] = attrs.field(factory=list)
    _templates: list[tuple[re.Pattern[str], str]] = attrs.field(factory=list, init=False)
    _registry: Any = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(_DOC_URI, resource)
        for template in self.document["paths"]:
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
            self._templates.append((re.compile(f"^{pattern}$"), template))

    def _validate(self, body: Any, pointer: str, where: str) -> None:
        import jsonschema

        schema = {"$ref": f"{_DOC_URI}#{pointer}"}
        validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
        problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if problems:
            listing = "; ".join(f"{'/'.join(map(str, e.path)) or '$'}: {e.message}" for e in problems[:5])
            raise ResponseMismatch(f"{where}: body does not match the OpenAPI schema: {listing}\n{body!r}")

    def template_for(self, path: str) -> str | None:
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return None

    def check(self, method: str, path: str, status: int, content_type: str, raw: bytes) -> None:
        """Raise :class:`ResponseMismatch` when the answer is not what the document says."""
        method = method.lower()
        where = f"{method.upper()} {path} -> {status}"
        self.seen.append((method.upper(), path, status))
        is_json = content_type in ("application/json", "application/problem+json")
        body = json.loads(raw) if is_json and raw else None
        template = self.template_for(path)
        operation = None if template is None else self.document["paths"][template].get(method)
        if operation is None or method == "head":
            if not path.startswith(self.prefix + "/") and path != self.prefix:
                if status >= 400 and content_type == "application/problem+json":
                    self._validate(body, "/components/schemas/Problem", where)
                return
            if method == "head" and (operation is not None or not raw):
                return  # an answer to HEAD carries no body to check
            if method == "options" and status == 204 and not raw:
                return  # a granted CORS preflight: CORS is the server's, not the document's
            # An unknown stepup route or an unsupported HTTP method: a problem, nothing else.
            if content_type != "application/problem+json":
                raise ResponseMismatch(f"{where}: expected application/problem+json, got {content_type!r}")
            self._validate(body, "/components/schemas/Problem", where)
            return
        responses = operation["responses"]
        if str(status) not in responses:
            raise ResponseMismatch(f"{where}: status {status} is not documented (documented: {sorted(responses)})")
        documented = responses[str(status)].get("content", {})
        if not documented:
            if raw:
                raise ResponseMismatch(f"{where}: documented without a body, but one came: {raw[:200]!r}")
            return
        if content_type not in documented:
            raise ResponseMismatch(f"{where}: content type {content_type!r} not documented ({sorted(documented)})")
        if is_json:
            pointer = "/" + _pointer(
                "paths", template or "", method, "responses", str(status), "content", content_type, "schema"
            )
            self._validate(body, pointer, where)

    async def middleware(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """An aiohttp client middleware that checks every answer (and leaves it readable)."""
        response = await handler(request)
        raw = await response.read()
        self.check(request.method, request.url.path, response.status, response.content_type, raw)
        return response
