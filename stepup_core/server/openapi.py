"""``GET {prefix}/openapi.json``: an OpenAPI 3.1 document generated from the route table and the
attrs models, so the contract cannot drift from the code.

Response schemas list every member as required (the converter always writes every field);
request schemas require the fields without a default, refuse unknown members, and carry every
constraint the server enforces on their shape, so that a request the document calls valid is
never refused as invalid: the scope grammar and length (and, for a served document, the scopes
the server knows), aliases of 1 to 64 characters that are not all blank, ``method`` as one of
the installed methods, and which members ``POST /verify`` needs for which method. What a
method makes of its own ``params`` and ``response`` objects is the method's to judge.
"""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import types
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .. import __version__, models
from ..introspection import Introspection, IntrospectionRequest
from ..scopes import MAX_SCOPE_LENGTH, SCOPE_PATTERN
from ..serialization import wire_name
from .http import JSON_CONTENT_TYPE, TOKEN_HEADER
from .problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX
from .routes import NO_TOKEN, REQUIRED_TOKEN, ROUTES, ListOf, RouteSpec

if TYPE_CHECKING:
    from ..service import StepUpService

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    304: "Not modified: the If-None-Match ETag is current",
    400: "Malformed request, or the response did not verify",
    401: "Sign-in required, or step-up required (RFC 9470 challenge in WWW-Authenticate)",
    403: "Refused by policy",
    404: "Not found, or unknown method",
    409: "Conflict with the challenge's or the user's state",
    410: "Challenge expired",
    413: "Request body too large",
    415: "Request body is not JSON",
    422: "Invalid payload or scope; `errors` names every bad field",
    429: "Too many attempts or requests; see Retry-After",
    500: "Internal error (details are logged, never returned)",
    502: "Code delivery or an outside provider failed",
    503: "Store unavailable",
}

REQUEST_MODELS: tuple[type, ...] = (
    models.CheckRequest,
    models.ChallengeRequest,
    models.VerifyRequest,
    models.EnrollmentRequest,
    models.EnrollmentCompletion,
    models.CredentialUpdate,
    IntrospectionRequest,
)
RESPONSE_MODELS: tuple[type, ...] = (
    models.CheckResult,
    models.CredentialView,
    models.CredentialRemoval,
    models.MethodInfo,
    models.ChallengeStart,
    models.ChallengeState,
    models.IssuedToken,
    models.EnrollmentStart,
    Introspection,
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if set(schema) == {"type"} and isinstance(schema["type"], str):
        return {"type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


_PRIMITIVES: dict[Any, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


class _SchemaBuilder:
    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def type_schema(self, tp: Any, *, request: bool) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self.union_schema(args, request=request)
        if origin in (tuple, list):
            item = args[0] if args else Any
            return {"type": "array", "items": self.type_schema(item, request=request)}
        if origin is dict or tp is dict:
            return {"type": "object"}
        if tp is Any:
            return {}
        if tp in _PRIMITIVES:
            return {"type": _PRIMITIVES[tp]}
        if inspect.isclass(tp) and issubclass(tp, enum.Enum):
            self.enum(tp)
            return _ref(tp.__name__)
        if attrs.has(tp):
            self.model(tp, request=request)
            return _ref(tp.__name__)
        raise TypeError(f"no JSON schema for {tp!r}")

    def union_schema(self, args: tuple[Any, ...], *, request: bool) -> dict[str, Any]:
        inner = [a for a in args if a is not type(None)]
        schema = (
            self.type_schema(inner[0], request=request)
            if len(inner) == 1
            else {"anyOf": [self.type_schema(a, request=request) for a in inner]}
        )
        return _nullable(schema) if len(inner) < len(args) else schema

    def enum(self, cls: type[enum.Enum]) -> None:
        if cls.__name__ not in self.schemas:
            schema: dict[str, Any] = {"type": "string", "enum": [m.value for m in cls]}
            if cls.__doc__ and cls.__doc__ != enum.Enum.__doc__ and not cls.__doc__.startswith("An enumeration"):
                schema["description"] = inspect.cleandoc(cls.__doc__)
            self.schemas[cls.__name__] = schema

    def model(self, cls: type, *, request: bool) -> None:
        if cls.__name__ in self.schemas:
            return
        self.schemas[cls.__name__] = {}  # placeholder against recursion
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            name = wire_name(field)
            properties[name] = self.type_schema(hints[field.name], request=request)
            if not request or field.default is attrs.NOTHING:
                required.append(name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        if cls.__doc__:
            schema["description"] = inspect.cleandoc(cls.__doc__)
        self.schemas[cls.__name__] = schema


def component_schemas() -> dict[str, dict[str, Any]]:
    builder = _SchemaBuilder()
    for cls in REQUEST_MODELS:
        builder.model(cls, request=True)
    for cls in RESPONSE_MODELS:
        builder.model(cls, request=False)
    schemas = builder.schemas
    schemas["ValidationIssue"] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "The field, in wire names (`requestedScopes[0]`)."},
            "message": {"type": "string"},
        },
        "required": ["path", "message"],
    }
    schemas["Problem"] = {
        "type": "object",
        "description": (
            "An RFC 9457 problem. `code` is stable (see the error table); `type` is "
            f"`{PROBLEM_TYPE_PREFIX}<code>`. Errors add their own members."
        ),
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "errors": {"type": "array", "items": _ref("ValidationIssue")},
            "check": _ref("CheckResult"),
            "transaction": _ref("Transaction"),
            "scope": {"type": "string"},
            "acrValues": {
                "type": "array",
                "items": {"type": "string"},
                "description": "RFC 9470: authentication context classes that would satisfy the scope.",
            },
            "maxAge": {
                "type": "number",
                "minimum": 0,
                "description": "RFC 9470: the most seconds since authentication that would satisfy the scope.",
            },
            "retryAfter": {"type": "number", "minimum": 0},
            "limit": {"type": "integer"},
            "allowed": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["type", "title", "status", "detail", "code"],
        "additionalProperties": True,
    }
    schemas["RevokedGrants"] = {
        "type": "object",
        "properties": {"revoked": {"type": "integer", "minimum": 0}},
        "required": ["revoked"],
        "additionalProperties": False,
    }
    schemas["PluginInfo"] = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "package": {"type": ["string", "null"]},
            "version": {"type": ["string", "null"]},
            "hooks": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "package", "version", "hooks"],
        "additionalProperties": False,
    }
    schemas["JsonWebKeySet"] = {
        "type": "object",
        "description": "RFC 7517 JSON Web Key Set: the public keys of signed grants.",
        "properties": {"keys": {"type": "array", "items": {"type": "object", "required": ["kty", "kid"]}}},
        "required": ["keys"],
    }
    schemas["OpenApiDocument"] = {
        "type": "object",
        "description": "This document.",
        "properties": {"openapi": {"type": "string"}, "paths": {"type": "object"}},
        "required": ["openapi", "info", "paths"],
    }
    return schemas


#: The scope grammar of :data:`~stepup_core.scopes.SCOPE_PATTERN` as a JSON Schema pattern.
SCOPE_JSON_PATTERN = SCOPE_PATTERN.pattern.removesuffix("\\Z") + "$"


def _constrain_requests(
    schemas: dict[str, dict[str, Any]], methods: tuple[tuple[str, bool], ...], scopes: tuple[str, ...] | None
) -> None:
    """Add to the request schemas what the server enforces beyond the models' types."""
    scope: dict[str, Any] = {
        "type": "string",
        "pattern": SCOPE_JSON_PATTERN,
        "maxLength": MAX_SCOPE_LENGTH,
        "description": "`resource:action` in lowercase, at most three segments and 64 characters"
        + ("; one of the scopes this server knows." if scopes else "."),
    }
    if scopes:
        scope["enum"] = sorted(scopes)
    schemas["Scope"] = scope
    method: dict[str, Any] = {"type": "string", "description": "An installed verification method."}
    if methods:
        method["enum"] = sorted(name for name, _ in methods)
    schemas["MethodName"] = method
    alias = {"type": "string", "minLength": 1, "maxLength": models.MAX_ALIAS_LENGTH, "pattern": models.ALIAS_NOT_BLANK}

    # What the server always accepts as transaction details (it takes more: nested arrays and
    # objects, any number of members, as long as the canonical form fits 4096 bytes). A member is
    # at most 6 bytes per character once canonical, so 10 members of these sizes always fit.
    schemas["TransactionDetails"] = {
        "type": "object",
        "description": (
            "The details of the action a step-up is bound to (amount, currency, payee...): a "
            "non-empty JSON object, at most 4096 bytes in RFC 8785 canonical form, integers within "
            "+-2^53 (send larger ones, and amounts, as strings). Nested arrays and objects are "
            "accepted too; this schema describes a subset that is always accepted."
        ),
        "minProperties": 1,
        "maxProperties": 10,
        "propertyNames": {"maxLength": 24},
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "maxLength": 32},
                {"type": "number", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
                {"type": "boolean"},
                {"type": "null"},
            ]
        },
    }
    for name in ("CheckRequest", "ChallengeRequest", "VerifyRequest", "IntrospectionRequest"):
        schemas[name]["properties"]["transaction"] = {"anyOf": [_ref("TransactionDetails"), {"type": "null"}]}

    schemas["CheckRequest"]["properties"]["scope"] = _ref("Scope")
    schemas["IntrospectionRequest"]["properties"]["scope"] = _ref("Scope")
    for name in ("ChallengeRequest", "VerifyRequest", "EnrollmentRequest"):
        schemas[name]["properties"]["method"] = _ref("MethodName")
    for name in ("ChallengeRequest", "VerifyRequest"):
        schemas[name]["properties"]["requestedScopes"] = {"type": "array", "items": _ref("Scope")}
    for name in ("EnrollmentRequest", "CredentialUpdate"):
        schemas[name]["properties"]["alias"] = {"anyOf": [alias, {"type": "null"}]}

    with_challenge = {"required": ["challengeId"], "properties": {"challengeId": {"type": "string"}}}
    named_scopes = {"required": ["requestedScopes"], "properties": {"requestedScopes": {"minItems": 1}}}
    # Without a challenge the scopes to grant must be named.
    rules: list[dict[str, Any]] = [{"anyOf": [with_challenge, named_scopes]}]
    needs_challenge = sorted(name for name, requires in methods if requires)
    if needs_challenge:
        rules.append(
            {
                "if": {"required": ["method"], "properties": {"method": {"enum": needs_challenge}}},
                "then": with_challenge,
            }
        )
    schemas["VerifyRequest"]["allOf"] = rules


def _body_schema(spec_response: Any) -> dict[str, Any]:
    if isinstance(spec_response, ListOf):
        return {"type": "array", "items": _body_schema(spec_response.item)}
    if isinstance(spec_response, str):
        return _ref(spec_response)
    return _ref(spec_response.__name__)


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_CONTENT_TYPE: {"schema": _ref("Problem")}}


def _operation(spec: RouteSpec) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": ["stepup-admin" if spec.auth == "admin" else "stepup"],
    }
    if spec.description:
        operation["description"] = spec.description
    parameters = _parameters(spec)
    if parameters:
        operation["parameters"] = parameters
    if spec.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON_CONTENT_TYPE: {"schema": _ref(spec.request.__name__)}},
        }
    operation["security"] = _security(spec)
    success = _success(spec)
    operation["responses"] = {str(spec.status): success}
    if spec.script:
        operation["responses"]["304"] = {"description": _STATUS_TEXT[304], "headers": success["headers"]}
    for status, body, description in spec.also:
        operation["responses"][str(status)] = {
            "description": description,
            "content": {JSON_CONTENT_TYPE: {"schema": _body_schema(body)}},
        }
    for status in spec.error_statuses():
        operation["responses"][str(status)] = _error(spec, status)
    return operation


def _parameters(spec: RouteSpec) -> list[dict[str, Any]]:
    narrower = dict(spec.path_schemas)
    parameters: list[dict[str, Any]] = [
        {
            "name": segment[1:-1],
            "in": "path",
            "required": True,
            "schema": copy.deepcopy(narrower.get(segment[1:-1], {"type": "string"})),
        }
        for segment in spec.path.split("/")
        if segment.startswith("{") and segment.endswith("}")
    ]
    for name, required, description in spec.query:
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": required,
                "description": description,
                "schema": {"type": "string", "minLength": 1} if required else {"type": "string"},
            }
        )
    if spec.script:
        parameters.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "The ETag of the copy the caller holds: 304 when it is current.",
                "schema": {"type": "string"},
            }
        )
    return parameters


def _security(spec: RouteSpec) -> list[dict[str, list[str]]]:
    if spec.service_credential:
        return [{"serviceCredential": []}]
    if spec.auth == "admin":
        return [{"admin": []}]
    if not spec.authenticated:
        return []
    session: dict[str, list[str]] = {"session": []}
    with_token: dict[str, list[str]] = {"session": [], "elevatedToken": []}
    if spec.token == NO_TOKEN:
        return [session]
    if spec.token == REQUIRED_TOKEN:
        return [with_token]
    return [with_token, session]


def _success(spec: RouteSpec) -> dict[str, Any]:
    success: dict[str, Any] = {"description": _STATUS_TEXT[spec.status]}
    if spec.html:
        success["content"] = {"text/html": {"schema": {"type": "string"}}}
        success["description"] = "An HTML page: the person can close the window."
    elif spec.script:
        success["content"] = {"text/javascript": {"schema": {"type": "string"}}}
        success["description"] = "An ES module."
    elif spec.response is not None:
        success["content"] = {JSON_CONTENT_TYPE: {"schema": _body_schema(spec.response)}}
    if spec.status == 201:
        success["headers"] = {
            "Location": {"description": "Where the new resource can be read.", "schema": {"type": "string"}}
        }
    if spec.script:
        success["headers"] = {"ETag": {"description": "Strong validator of the file.", "schema": {"type": "string"}}}
    return success


def _error(spec: RouteSpec, status: int) -> dict[str, Any]:
    error: dict[str, Any] = {"description": _STATUS_TEXT[status], "content": _problem_content()}
    if spec.html:
        error["content"]["text/html"] = {"schema": {"type": "string"}}
    if status == 401:
        error["headers"] = {
            "WWW-Authenticate": {
                "description": (
                    'For step-up: `Bearer error="insufficient_user_authentication", '
                    'error_description="...", scope="<scope>"` (RFC 9470), with `acr_values` '
                    "and `max_age` when the scope's policy names them."
                ),
                "schema": {"type": "string"},
            }
        }
    if status == 429:
        error["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    return error


@functools.lru_cache(maxsize=16)
def _document(
    prefix: str,
    app_name: str,
    methods: tuple[tuple[str, bool], ...],
    scopes: tuple[str, ...] | None,
    admin: bool = False,
) -> dict[str, Any]:
    from .admin_routes import ADMIN_RESPONSE_MODELS, ADMIN_ROUTES

    schemas = component_schemas()
    _constrain_requests(schemas, methods, scopes)
    paths: dict[str, dict[str, Any]] = {}
    for spec in (*ROUTES, *(ADMIN_ROUTES if admin else ())):
        paths.setdefault(prefix + spec.path, {})[spec.method.lower()] = _operation(spec)
    security_schemes: dict[str, Any] = {}
    if admin:
        builder = _SchemaBuilder()
        builder.schemas = schemas
        for cls in ADMIN_RESPONSE_MODELS:
            builder.model(cls, request=False)
        security_schemes["admin"] = {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An operator's credential, as the admin identify ([admin.identify]) reads it; never a user's session."
            ),
        }
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": f"{app_name} step-up authentication",
            "version": __version__,
            "description": (
                "Step-up authentication: re-verify before a sensitive action and receive a "
                "short-lived elevated access token bound to its scope. Errors are "
                "application/problem+json with a stable `code`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "The application's own session, as its identify(request) reads it "
                        "(a bearer token, a cookie...)."
                    ),
                },
                "serviceCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A service credential (`sis_...`) whose SHA-256 is configured under "
                        "[introspection.clients]: for applications beside the server."
                    ),
                },
                "elevatedToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": TOKEN_HEADER,
                    "description": "An elevated access token (`sut_...`) from POST /verify.",
                },
                **security_schemes,
            },
        },
    }
    return document


def build_document(
    prefix: str,
    *,
    app_name: str = "stepup",
    methods: Iterable[models.MethodInfo] = (),
    scopes: Iterable[str] | None = None,
    admin: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for stepup mounted at ``prefix``. ``methods`` (the installed
    ones) make ``method`` an enumeration, and ``scopes`` (the known ones) ``Scope``; without
    them the document holds the grammar only. With ``admin`` it holds the admin API too (it is
    documented only where it is mounted). :func:`document_for` passes a service's."""
    shape = tuple(
        sorted((m.name, m.requires_challenge and m.interaction is not models.Interaction.REDIRECT) for m in methods)
    )
    known = tuple(sorted(set(scopes))) if scopes is not None else None
    return copy.deepcopy(_document(prefix, app_name, shape, known, admin))


def document_for(service: StepUpService, prefix: str | None = None, *, admin: bool = False) -> dict[str, Any]:
    """The document ``GET {prefix}/openapi.json`` serves for ``service``: its installed methods
    and the scopes it knows (and the admin API when it is mounted)."""
    return build_document(
        prefix or service.config.server.prefix,
        app_name=service.config.app_name,
        methods=service.methods(),
        scopes=service.policies.known_scopes(),
        admin=admin,
    )
