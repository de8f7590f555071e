"""The stepup routes, described once: the table drives every adapter's router and ``openapi.json``.

Each handler takes a framework-neutral :class:`~stepup_core.server.http.Request` and answers an
:class:`~stepup_core.server.http.Answer` (or raises a :class:`~stepup_core.errors.StepUpError`,
which :func:`~stepup_core.server.router.dispatch` turns into a problem). A route another part of
stepup adds is one more :class:`RouteSpec` in :data:`ROUTES`: aiohttp, ASGI and WSGI serve it
and the OpenAPI document describes it, with nothing else to change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..errors import ConfigError, StepUpError
from ..introspection import Introspection, IntrospectionRequest, client_of
from ..introspection import introspect as decide_introspection
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
    Answer,
    Request,
    elevated_token,
    empty_answer,
    json_answer,
    principal_of,
    read_model,
)
from .problems import (
    html_page,
    internal_error,
    log,
    log_unexpected,
    problem_answer,
    problem_page,
    wants_html,
)

Handler = Callable[[Request], Awaitable[Answer]]

#: Token use of a route: none, optional (needed in some cases) or required.
NO_TOKEN, OPTIONAL_TOKEN, REQUIRED_TOKEN = "none", "optional", "required"

_BODY_ERRORS = (400, 413, 415, 422)
#: Seconds a verifier may cache ``jwks.json``: how long a removed key may still be trusted elsewhere.
JWKS_MAX_AGE = 60


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
    #: Called by a service with its credential (``serviceCredential``), not by a user's session.
    service_credential: bool = False
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
        if self.authenticated or self.service_credential:
            statuses |= {401, 503}
        if self.request is not None:
            statuses |= set(_BODY_ERRORS)
        return tuple(sorted(statuses))


# --- handlers ------------------------------------------------------------------------------


async def check(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, CheckRequest)
    with observe(service.pm, "check") as operation:
        result = await service.check(principal, body.scope, elevated_token(request), body.transaction)
        operation.attributes["scope"] = result.scope
        operation.outcome = "required" if result.is_required else "not_required"
    return json_answer(result)


async def list_methods(request: Request) -> Answer:
    service = request.service
    infos = [
        attrs.evolve(info, browser_module=module_url(request.prefix, info.name))
        if browser_module_of(service.verifiers.get(info.name)) is not None
        else info
        for info in service.methods()
    ]
    return json_answer(infos)


def _fill_public_url(request: Request) -> None:
    """Set the service's public URL from the socket this server listens on, when unconfigured.

    The local socket address is the server's own; the Host header is the caller's word and is
    never used for it.
    """
    service = request.service
    if service.public_url or request.server is None:
        return
    host, port = request.server
    if ":" in host:
        host = f"[{host}]"
    service.public_url = f"{'https' if request.secure else 'http'}://{host}:{port}"
    log.warning(
        "server.public_url is not set: redirect callbacks use %s, this server's own address; "
        "set [server] public_url when the server sits behind a proxy or another name",
        service.public_url,
    )


async def begin_challenge(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, ChallengeRequest)
    _fill_public_url(request)
    start = await service.begin(principal, body)
    location = f"{request.prefix}/challenges/{start.challenge_id}"
    return json_answer(start, status=201, headers={"Location": location})


async def verify(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, VerifyRequest)
    return json_answer(await service.verify(principal, body))


async def challenge_status(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    return json_answer(await service.challenge_status(principal, request.params["id"]))


async def callback(request: Request) -> Answer:
    """The browser leg of a redirect method: no session here, the ``state`` finds the challenge."""
    service = request.service
    method = request.params["method"]
    try:
        await service.complete_callback(method, dict(request.query))
    except StepUpError as exc:
        if exc.status >= 500:
            log.error("callback for %s failed: %s: %s", method, exc.code, exc)
        return problem_page(exc) if wants_html(request) else problem_answer(exc)
    except Exception as exc:  # noqa: BLE001 - a person in a browser sees a page, never a traceback
        log_unexpected(request, exc)
        error = internal_error()
        return problem_page(error) if wants_html(request) else problem_answer(error)
    # Only the success page runs a script (its own origin's, never inline): it tells a page that
    # opened this window that the sign-in finished. Failure pages, which show what the URL
    # carried, run none; the opener learns of a failure by polling.
    return html_page(
        "Verification complete",
        "You can close this window and return to the application.",
        script=callback_script_tag(request, method),
    )


async def list_credentials(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    return json_answer(await service.list_credentials(principal))


async def update_credential(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, CredentialUpdate)
    view = await service.update_credential(principal, request.params["id"], body, elevated_token(request))
    return json_answer(view)


async def delete_credential(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    removal = await service.delete_credential(principal, request.params["id"], elevated_token(request))
    if removal is not None:  # more went than the credential named: say which and why
        return json_answer(removal)
    return empty_answer(204)


async def begin_enrollment(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, EnrollmentRequest)
    _fill_public_url(request)
    start = await service.begin_enrollment(principal, body, elevated_token(request))
    location = f"{request.prefix}/enrollments/{start.enrollment_id}"
    return json_answer(start, status=201, headers={"Location": location})


async def complete_enrollment(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    body = await read_model(request, EnrollmentCompletion)
    view = await service.complete_enrollment(principal, request.params["id"], body, elevated_token(request))
    return json_answer(view)


async def revoke_grants(request: Request) -> Answer:
    service = request.service
    principal = await principal_of(request)
    return json_answer({"revoked": await service.revoke_grants(principal)})


async def openapi_document(request: Request) -> Answer:
    document = request.mounted.document
    if document is None:
        raise ConfigError("this stepup mount has no OpenAPI document builder")
    return json_answer(document())


async def introspect(request: Request) -> Answer:
    """RFC 7662 for applications beside the server: a service credential, never a session."""

    service = request.service
    client = client_of(request.headers.get("Authorization"), service.config.introspection.clients)
    body = await read_model(request, IntrospectionRequest)
    return json_answer(await decide_introspection(service, body, client=client))


async def jwks(request: Request) -> Answer:
    """The keys of signed grants; a retired key stays until its last token has expired."""
    answer = json_answer(await request.service.keyring.jwks())
    headers = tuple((k, v) for k, v in answer.headers if k != "Cache-Control")
    return attrs.evolve(answer, headers=(*headers, ("Cache-Control", f"public, max-age={JWKS_MAX_AGE}")))


async def list_plugins(request: Request) -> Answer:
    return json_answer(describe_plugins(request.service.pm))


# --- the table -----------------------------------------------------------------------------

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "POST",
        "/check",
        check,
        "checkStepUp",
        "Is step-up required for a scope?",
        "The StepUpCheck. Send the elevated token you hold in X-Elevated-Access-Token; "
        "`isRequired` is false only when it covers the scope (and, with `transaction`, is bound "
        "to those details; without, to none). Any failure on this path answers "
        "`isRequired: true`. With `transaction` the answer echoes it with its hash and the "
        "summary to show the person.",
        request=CheckRequest,
        response=CheckResult,
        token=OPTIONAL_TOKEN,
    ),
    RouteSpec(
        "GET",
        "/methods",
        list_methods,
        "listMethods",
        "Installed verification methods",
        response=ListOf(MethodInfo),
        authenticated=False,
    ),
    RouteSpec(
        "POST",
        "/challenges",
        begin_challenge,
        "beginChallenge",
        "Start a verification challenge",
        "Issues a challenge for one method (a code is sent, options or a message to sign are "
        "returned, or a URL to follow). The method's public data is in `data`. With "
        "`transaction` the challenge, and the grant it leads to, are bound to those details; "
        "a method that commits (`commitsTransaction` in `GET /methods`) makes its proof cover "
        "them.",
        request=ChallengeRequest,
        response=ChallengeStart,
        status=201,
        errors=(403, 404, 409, 429, 502),
    ),
    RouteSpec(
        "POST",
        "/verify",
        verify,
        "verify",
        "Verify a response and receive an elevated access token",
        "The token is returned once; the server keeps only its hash. A token bound to "
        "transaction details (`transactionHash`) is single-use and lets through only a request "
        "carrying the same details.",
        request=VerifyRequest,
        response=IssuedToken,
        errors=(403, 404, 409, 410, 429, 502),
    ),
    RouteSpec(
        "GET",
        "/challenges/{id}",
        challenge_status,
        "getChallenge",
        "Status of a challenge",
        "For redirect methods: once the callback completed the challenge, the first poll by its "
        "owner carries the grant (`grant`), exactly once.",
        response=ChallengeState,
        errors=(403, 404, 409, 410),
    ),
    RouteSpec(
        "GET",
        "/callback/{method}",
        callback,
        "completeCallback",
        "Redirect target of redirect methods",
        "The provider sends the person's browser here. On success an HTML page says the window "
        "can be closed; on failure a problem (an HTML page for browsers, else problem+json).",
        authenticated=False,
        html=True,
        errors=(400, 401, 403, 404, 409, 410, 422, 429, 502, 503),
        query=(("state", True, "The value the method put in its URL; finds the challenge."),),
    ),
    RouteSpec(
        "GET",
        "/credentials",
        list_credentials,
        "listCredentials",
        "The caller's credentials (never secrets)",
        response=ListOf(CredentialView),
    ),
    RouteSpec(
        "PATCH",
        "/credentials/{id}",
        update_credential,
        "updateCredential",
        "Rename a credential or make it the default",
        "Needs an elevated access token for `credential:update`.",
        request=CredentialUpdate,
        response=CredentialView,
        token=REQUIRED_TOKEN,
        errors=(403, 404),
    ),
    RouteSpec(
        "DELETE",
        "/credentials/{id}",
        delete_credential,
        "deleteCredential",
        "Unlink a credential",
        "Needs an elevated access token for `credential:unlink`. Answers 204, or 200 with a "
        "`CredentialRemoval` when other credentials went with it: removing the last passkey or "
        "authenticator app also removes the recovery codes, which work only beside one.",
        status=204,
        token=REQUIRED_TOKEN,
        errors=(403, 404),
        also=((200, CredentialRemoval, "Removed, with the credentials that went with it"),),
    ),
    RouteSpec(
        "POST",
        "/enrollments",
        begin_enrollment,
        "beginEnrollment",
        "Start enrolling a credential",
        "A user who already holds a credential usable for step-up needs an elevated access token "
        "for `credential:link`; the first credential needs none.",
        request=EnrollmentRequest,
        response=EnrollmentStart,
        status=201,
        token=OPTIONAL_TOKEN,
        errors=(403, 404, 409, 429, 502),
    ),
    RouteSpec(
        "POST",
        "/enrollments/{id}",
        complete_enrollment,
        "completeEnrollment",
        "Complete an enrolment",
        request=EnrollmentCompletion,
        response=CredentialView,
        token=OPTIONAL_TOKEN,
        errors=(403, 404, 409, 410, 429, 502),
    ),
    RouteSpec(
        "DELETE",
        "/grants",
        revoke_grants,
        "revokeGrants",
        "Revoke this session's elevated access tokens",
        response="RevokedGrants",
    ),
    RouteSpec(
        "GET",
        "/openapi.json",
        openapi_document,
        "getOpenApi",
        "This contract, machine-readable",
        response="OpenApiDocument",
        authenticated=False,
    ),
    RouteSpec(
        "POST",
        "/introspect",
        introspect,
        "introspect",
        "Validate, and optionally spend, an elevated access token",
        "RFC 7662 for an application beside the server (in any language): is this token valid for "
        "this scope, user and session? `consume: true` spends a single-use token atomically, as a "
        "guard does. `allow` says whether the guarded action may proceed; when it may not, "
        "`challenge` holds the exact answer to send (the 401; a 403 `transaction_mismatch` for a "
        "token bound to other `transaction` details than the request's, which is not spent). "
        "Needs a service credential (`[introspection.clients]`), never a user's session.",
        request=IntrospectionRequest,
        response=Introspection,
        authenticated=False,
        service_credential=True,
    ),
    RouteSpec(
        "GET",
        "/jwks.json",
        jwks,
        "getJwks",
        "Keys of signed grants",
        "The JSON Web Key Set that verifies grants issued as JWTs (scopes with `signed = true`). "
        "A retired key stays published until the last token it signed has expired.",
        response="JsonWebKeySet",
        authenticated=False,
    ),
    RouteSpec(
        "GET",
        "/plugins",
        list_plugins,
        "listPlugins",
        "Installed stepup plugins",
        "Name, distribution, version and hooks of each plugin (what `stepup plugins` prints).",
        response=ListOf("PluginInfo"),
        authenticated=False,
    ),
    RouteSpec(
        "GET",
        "/static/{name}",
        static_file,
        "getBrowserFile",
        "The browser client",
        "`stepup.js` (the browser client, an ES module), `react.js` (its React adapter) and "
        "`callback.js` (the script of the redirect callback page). Revalidate with If-None-Match.",
        authenticated=False,
        script=True,
        errors=(404,),
        path_schemas=(("name", {"type": "string", "enum": list(STATIC_FILES)}),),
    ),
    RouteSpec(
        "GET",
        "/methods/{name}/browser.js",
        method_module,
        "getMethodModule",
        "A method's browser half",
        "The ES module the method's plugin ships for the browser; `GET /methods` lists its URL in "
        "`browserModule`. Revalidate with If-None-Match.",
        authenticated=False,
        script=True,
        errors=(404,),
        path_schemas=(("name", {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}),),
    ),
)
