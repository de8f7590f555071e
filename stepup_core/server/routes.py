"""The stepup routes, described once: the table drives both the router and ``openapi.json``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web

from ..errors import StepUpError
from ..models import (
    ChallengeRequest,
    ChallengeStart,
    ChallengeState,
    CheckRequest,
    CheckResult,
    CredentialRemoval,
    CredentialUpdate,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    EnrollmentStart,
    IssuedToken,
    MethodInfo,
    VerifyRequest,
)
from ..observe import observe
from ..plugins import describe_plugins
from .browser import (
    STATIC_FILES,
    browser_module_of,
    callback_script_tag,
    method_module,
    module_url,
    static_file,
)
from .http import (
    DOCUMENT_KEY,
    PREFIX_KEY,
    elevated_token,
    json_response,
    principal_of,
    read_model,
    service_of,
)
from .problems import (
    html_page,
    internal_error,
    log,
    log_unexpected,
    problem_page,
    problem_response,
    wants_html,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Token use of a route: none, optional (needed in some cases) or required.
NO_TOKEN, OPTIONAL_TOKEN, REQUIRED_TOKEN = "none", "optional", "required"

_BODY_ERRORS = (400, 413, 415, 422)


@attrs.frozen
class ListOf:
    """A JSON array of ``item`` (an attrs class or a schema name in the document)."""

    item: Any


@attrs.frozen
class RouteSpec:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    description: str = ""
    #: The request body's model (an attrs class), if any.
    request: type | None = None
    #: The success body: an attrs class, a schema name in the document, a :class:`ListOf`, or None.
    response: Any = None
    status: int = 200
    authenticated: bool = True
    token: str = NO_TOKEN
    #: Error statuses the route answers (besides 500, always possible).
    errors: tuple[int, ...] = ()
    #: The success body is an HTML page (the browser leg of redirect methods).
    html: bool = False
    #: Query parameters (name, required, description).
    query: tuple[tuple[str, bool, str], ...] = ()
    #: Who may call an authenticated route: ``session`` (a user, through ``identify``) or
    #: ``admin`` (an operator, through the admin identify).
    auth: str = "session"
    #: Other success answers: (status, body as for ``response``, description).
    also: tuple[tuple[int, Any, str], ...] = ()
    #: The success body is JavaScript for the browser, with an ETag (304 on If-None-Match).
    script: bool = False
    #: JSON schemas of path parameters that are narrower than any string, by name.
    path_schemas: tuple[tuple[str, Any], ...] = ()

    def error_statuses(self) -> tuple[int, ...]:
        statuses = set(self.errors) | {500}
        if self.authenticated:
            statuses |= {401, 503}
        if self.request is not None:
            statuses |= set(_BODY_ERRORS)
        return tuple(sorted(statuses))


def _prefix(request: web.Request) -> str:
    return request.config_dict[PREFIX_KEY]


# --- handlers ------------------------------------------------------------------------------


async def check(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, CheckRequest)
    with observe(service.pm, "check") as operation:
        result = await service.check(principal, body.scope, elevated_token(request))
        operation.attributes["scope"] = result.scope
        operation.outcome = "required" if result.is_required else "not_required"
    return json_response(result)


async def list_methods(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    prefix = _prefix(request)
    infos = [
        attrs.evolve(info, browser_module=module_url(prefix, info.name))
        if browser_module_of(service.verifiers.get(info.name)) is not None
        else info
        for info in service.methods()
    ]
    return json_response(infos)


def _fill_public_url(request: web.Request) -> None:
    """Set the service's public URL from the socket this server listens on, when unconfigured.

    The local socket address is the server's own; the Host header is the caller's word and is
    never used for it.
    """
    service = service_of(request)
    if service.public_url or request.transport is None:
        return
    sockname = request.transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return
    host, port = str(sockname[0]), int(sockname[1])
    if ":" in host:
        host = f"[{host}]"
    service.public_url = f"{'https' if request.secure else 'http'}://{host}:{port}"
    log.warning(
        "server.public_url is not set: redirect callbacks use %s, this server's own address; "
        "set [server] public_url when the server sits behind a proxy or another name",
        service.public_url,
    )


async def begin_challenge(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, ChallengeRequest)
    _fill_public_url(request)
    start = await service.begin(principal, body)
    location = f"{_prefix(request)}/challenges/{start.challenge_id}"
    return json_response(start, status=201, headers={"Location": location})


async def verify(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, VerifyRequest)
    return json_response(await service.verify(principal, body))


async def challenge_status(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    return json_response(await service.challenge_status(principal, request.match_info["id"]))


async def callback(request: web.Request) -> web.StreamResponse:
    """The browser leg of a redirect method: no session here, the ``state`` finds the challenge."""
    service = service_of(request)
    method = request.match_info["method"]
    try:
        await service.complete_callback(method, dict(request.query))
    except StepUpError as exc:
        if exc.status >= 500:
            log.error("callback for %s failed: %s: %s", method, exc.code, exc)
        return problem_page(exc) if wants_html(request) else problem_response(exc)
    except Exception as exc:  # noqa: BLE001 - a person in a browser sees a page, never a traceback
        log_unexpected(request, exc)
        error = internal_error()
        return problem_page(error) if wants_html(request) else problem_response(error)
    # Only the success page runs a script (its own origin's, never inline): it tells a page that
    # opened this window that the sign-in finished. Failure pages, which show what the URL
    # carried, run none; the opener learns of a failure by polling.
    return html_page(
        "Verification complete",
        "You can close this window and return to the application.",
        script=callback_script_tag(request, method),
    )


async def list_credentials(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    return json_response(await service.list_credentials(principal))


async def update_credential(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, CredentialUpdate)
    view = await service.update_credential(principal, request.match_info["id"], body, elevated_token(request))
    return json_response(view)


async def delete_credential(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    removal = await service.delete_credential(principal, request.match_info["id"], elevated_token(request))
    if removal is not None:  # more went than the credential named: say which and why
        return json_response(removal)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


async def begin_enrollment(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, EnrollmentRequest)
    _fill_public_url(request)
    start = await service.begin_enrollment(principal, body, elevated_token(request))
    location = f"{_prefix(request)}/enrollments/{start.enrollment_id}"
    return json_response(start, status=201, headers={"Location": location})


async def complete_enrollment(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    body = await read_model(request, EnrollmentCompletion)
    view = await service.complete_enrollment(principal, request.match_info["id"], body, elevated_token(request))
    return json_response(view)


async def revoke_grants(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    principal = await principal_of(request)
    return json_response({"revoked": await service.revoke_grants(principal)})


async def openapi_document(request: web.Request) -> web.StreamResponse:
    return json_response(request.config_dict[DOCUMENT_KEY]())


async def list_plugins(request: web.Request) -> web.StreamResponse:
    return json_response(describe_plugins(service_of(request).pm))


# --- the table -----------------------------------------------------------------------------

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST", "/check", check, "checkStepUp", "Is step-up required for a scope?",
        "The StepUpCheck. Send the elevated token you hold in X-Elevated-Access-Token; "
        "`isRequired` is false only when it covers the scope. Any failure on this path answers "
        "`isRequired: true`.",
        request=CheckRequest, response=CheckResult, token=OPTIONAL_TOKEN,
    ),
    RouteSpec(
        "GET", "/methods", list_methods, "listMethods", "Installed verification methods",
        response=ListOf(MethodInfo), authenticated=False,
    ),
    RouteSpec(
        "POST", "/challenges", begin_challenge, "beginChallenge", "Start a verification challenge",
        "Issues a challenge for one method (a code is sent, options or a message to sign are "
        "returned, or a URL to follow). The method's public data is in `data`.",
        request=ChallengeRequest, response=ChallengeStart, status=201,
        errors=(403, 404, 409, 429, 502),
    ),
    RouteSpec(
        "POST", "/verify", verify, "verify", "Verify a response and receive an elevated access token",
        "The token is returned once; the server keeps only its hash.",
        request=VerifyRequest, response=IssuedToken, errors=(403, 404, 409, 410, 429, 502),
    ),
    RouteSpec(
        "GET", "/challenges/{id}", challenge_status, "getChallenge", "Status of a challenge",
        "For redirect methods: once the callback completed the challenge, the first poll by its "
        "owner carries the grant (`grant`), exactly once.",
        response=ChallengeState, errors=(403, 404, 409, 410),
    ),
    RouteSpec(
        "GET", "/callback/{method}", callback, "completeCallback", "Redirect target of redirect methods",
        "The provider sends the person's browser here. On success an HTML page says the window "
        "can be closed; on failure a problem (an HTML page for browsers, else problem+json).",
        authenticated=False, html=True, errors=(400, 401, 403, 404, 409, 410, 422, 429, 502, 503),
        query=(("state", True, "The value the method put in its URL; finds the challenge."),),
    ),
    RouteSpec(
        "GET", "/credentials", list_credentials, "listCredentials", "The caller's credentials (never secrets)",
        response=ListOf(CredentialView),
    ),
    RouteSpec(
        "PATCH", "/credentials/{id}", update_credential, "updateCredential",
        "Rename a credential or make it the default",
        "Needs an elevated access token for `credential:update`.",
        request=CredentialUpdate, response=CredentialView, token=REQUIRED_TOKEN, errors=(403, 404),
    ),
    RouteSpec(
        "DELETE", "/credentials/{id}", delete_credential, "deleteCredential", "Unlink a credential",
        "Needs an elevated access token for `credential:unlink`. Answers 204, or 200 with a "
        "`CredentialRemoval` when other credentials went with it: removing the last passkey or "
        "authenticator app also removes the recovery codes, which work only beside one.",
        status=204, token=REQUIRED_TOKEN, errors=(403, 404),
        also=((200, CredentialRemoval, "Removed, with the credentials that went with it"),),
    ),
    RouteSpec(
        "POST", "/enrollments", begin_enrollment, "beginEnrollment", "Start enrolling a credential",
        "A user who already holds a credential usable for step-up needs an elevated access token "
        "for `credential:link`; the first credential needs none.",
        request=EnrollmentRequest, response=EnrollmentStart, status=201, token=OPTIONAL_TOKEN,
        errors=(403, 404, 409, 429, 502),
    ),
    RouteSpec(
        "POST", "/enrollments/{id}", complete_enrollment, "completeEnrollment", "Complete an enrolment",
        request=EnrollmentCompletion, response=CredentialView, token=OPTIONAL_TOKEN,
        errors=(403, 404, 409, 410, 429, 502),
    ),
    RouteSpec(
        "DELETE", "/grants", revoke_grants, "revokeGrants", "Revoke this session's elevated access tokens",
        response="RevokedGrants",
    ),
    RouteSpec(
        "GET", "/openapi.json", openapi_document, "getOpenApi", "This contract, machine-readable",
        response="OpenApiDocument", authenticated=False,
    ),
    RouteSpec(
        "GET", "/plugins", list_plugins, "listPlugins", "Installed stepup plugins",
        "Name, distribution, version and hooks of each plugin (what `stepup plugins` prints).",
        response=ListOf("PluginInfo"), authenticated=False,
    ),
    RouteSpec(
        "GET", "/static/{name}", static_file, "getBrowserFile", "The browser client",
        "`stepup.js` (the browser client, an ES module), `react.js` (its React adapter) and "
        "`callback.js` (the script of the redirect callback page). Revalidate with If-None-Match.",
        authenticated=False, script=True, errors=(404,),
        path_schemas=(("name", {"type": "string", "enum": list(STATIC_FILES)}),),
    ),
    RouteSpec(
        "GET", "/methods/{name}/browser.js", method_module, "getMethodModule", "A method's browser half",
        "The ES module the method's plugin ships for the browser; `GET /methods` lists its URL in "
        "`browserModule`. Revalidate with If-None-Match.",
        authenticated=False, script=True, errors=(404,),
        path_schemas=(("name", {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}),),
    ),
)
