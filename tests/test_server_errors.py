"""Every error a stepup route can answer is application/problem+json with a stable code, the
right status and, for bad input, the fields named; never a 500 for bad input, never a traceback.
Every answer is also checked against the OpenAPI document by the client fixture."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

from stepup_core import errors
from stepup_core.models import CredentialFormat, Factor, Principal
from stepup_core.server import build_app, build_document, problem_middleware
from stepup_core.server.problems import problem_response
from stepup_core.server.routes import ROUTES
from stepup_core.server.testing import ResponseMismatch, ResponseValidator
from stepup_core.testing.methods import RedirectVerifier, ThrowawayVerifier
from stepup_core.verifier import Attempt, EnrollmentStep, NewCredential, RateLimit, Verification, VerifierContext

ALICE = {"Authorization": "Bearer alice:s1"}
BOB = {"Authorization": "Bearer bob:s1"}
PROBLEM = "application/problem+json"


def _raise_for(params: dict[str, Any]) -> None:
    kind = params.get("raise")
    if kind == "replay":
        raise errors.ReplayDetected("this response was already used")
    if kind == "delivery":
        raise errors.DeliveryFailed("smtp.internal.example:25 refused the connection")
    if kind == "enrollment":
        raise errors.EnrollmentFailed("the authenticator refused the registration")
    if kind == "crash":
        raise RuntimeError("boom at /srv/secret/path")


@attrs.define
class FaultVerifier(ThrowawayVerifier):
    """Raises what ``raise`` in its params or response names; otherwise succeeds."""

    name: str = "fault"
    factor: Factor = Factor.MFA
    formats: tuple[CredentialFormat, ...] = (CredentialFormat.TOTP,)
    package: str = "stepup-fault"

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
        _raise_for(attempt.params)
        return {}

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        _raise_for(attempt.params)
        assert attempt.credential is not None
        return Verification(attempt.credential.id)

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        _raise_for(attempt.params)
        return EnrollmentStep(credential=NewCredential(format=CredentialFormat.TOTP, alias="fault"))

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        raise AssertionError("enrolment completes at once")


@pytest.fixture
def methods(methods: Any, pin_verifier: Any) -> Any:
    methods.verifiers += [
        attrs.evolve(pin_verifier, name="quickpin", requires_challenge=False),
        attrs.evolve(pin_verifier, name="limited", begin_limits=(RateLimit(limit=2, window=60.0),)),
        RedirectVerifier(name="link"),
        FaultVerifier(),
    ]
    return methods


@pytest.fixture
def store(switchable_store: Any) -> Any:
    return switchable_store


@pytest.fixture(params=["aiohttp", "asgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    """Every test on ``client`` runs against both adapters of the one route table."""
    return str(request.param)


@pytest.fixture
async def client(adapter_client: Any) -> Any:
    return adapter_client


async def problem_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a problem answer and return its body."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == PROBLEM, text
    body = json.loads(text)
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == f"urn:stepup:problem:{code}"
    assert body["title"] and body["detail"]
    assert "Traceback" not in text and 'File "' not in text
    return dict(body)


async def enrol(client: Any, method: str, headers: dict[str, str] = ALICE, token: str | None = None) -> str:
    extra = {"X-Elevated-Access-Token": token} if token else {}
    params = {"pin": "1234"} if method in ("pin", "quickpin", "limited") else {}
    start = await client.post(
        "/stepup/enrollments", json={"method": method, "params": params}, headers={**headers, **extra}
    )
    assert start.status == 201, await start.text()
    body = await start.json()
    if body["credential"] is not None:
        return str(body["credential"]["id"])
    done = await client.post(
        f"/stepup/enrollments/{body['enrollmentId']}", json={"response": {"pin": "1234"}}, headers=headers
    )
    assert done.status == 200, await done.text()
    return str((await done.json())["id"])


async def begin(client: Any, method: str = "pin", scopes: tuple[str, ...] = ("user:update",), **extra: Any) -> Any:
    return await client.post(
        "/stepup/challenges", json={"method": method, "requestedScopes": list(scopes), **extra}, headers=ALICE
    )


async def verify(client: Any, challenge_id: str | None, code: Any, method: str = "pin", **extra: Any) -> Any:
    body: dict[str, Any] = {"method": method, "response": {"code": code} if code is not None else {}, **extra}
    if challenge_id is not None:
        body["challengeId"] = challenge_id
    return await client.post("/stepup/verify", json=body, headers=ALICE)


# --- request shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{bad",
        b"",
        b"   ",
        b"\xff\xfe\xfa",
        b'{"scope": NaN}',
        b'{"scope": "user:update"} trailing',
        b"[" * 30000 + b"]" * 30000,
        b"1" * 5000,
    ],
    ids=["syntax", "empty", "blank", "not-utf8", "nan", "trailing", "deep", "huge-int"],
)
async def test_malformed_json_is_400(client: Any, raw: bytes) -> None:
    resp = await client.post("/stepup/check", data=raw, headers={**ALICE, "Content-Type": "application/json"})
    await problem_of(resp, 400, "malformed_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_not_declared_json_is_415(client: Any, content_type: str | None) -> None:
    headers = {**ALICE, **({"Content-Type": content_type} if content_type else {})}
    # (Without a Content-Type, aiohttp's client labels a bytes body application/octet-stream.)
    resp = await client.post("/stepup/check", data=b'{"scope": "user:update"}', headers=headers)
    body = await problem_of(resp, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]


async def test_json_subtypes_are_accepted(client: Any) -> None:
    resp = await client.post(
        "/stepup/check",
        data=b'{"scope": "user:update"}',
        headers={**ALICE, "Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    ("verb", "path", "body", "paths"),
    [
        ("POST", "/stepup/check", {"scope": 5}, {"scope"}),
        ("POST", "/stepup/check", {}, {"scope"}),
        ("POST", "/stepup/check", {"scope": "user:update", "extra": 1}, {"extra"}),
        ("POST", "/stepup/check", ["user:update"], {"$"}),
        ("POST", "/stepup/challenges", {"method": 1, "requestedScopes": "user:update"}, {"method", "requestedScopes"}),
        (
            "POST",
            "/stepup/challenges",
            {"method": "pin", "requestedScopes": ["user:update", 7], "params": []},
            {"requestedScopes[1]", "params"},
        ),
        ("POST", "/stepup/verify", {"method": "pin"}, {"response"}),
        (
            "POST",
            "/stepup/verify",
            {"method": "pin", "response": "1234", "challengeId": 3},
            {"response", "challengeId"},
        ),
        ("POST", "/stepup/enrollments", {"method": "pin", "alias": 3}, {"alias"}),
        ("POST", "/stepup/enrollments/enr_x", {"response": 1}, {"response"}),
        ("PATCH", "/stepup/credentials/cred_x", {"isDefault": "yes", "alias": ["a"]}, {"isDefault", "alias"}),
    ],
)
async def test_wrong_types_are_422_naming_every_field(
    client: Any, verb: str, path: str, body: Any, paths: set[str]
) -> None:
    resp = await client.request(verb, path, json=body, headers=ALICE)
    problem = await problem_of(resp, 422, "validation_error")
    assert {e["path"] for e in problem["errors"]} == paths
    for field in paths - {"$"}:
        assert field in problem["detail"]


async def test_body_over_the_limit_is_413_by_content_length(client: Any, service: Any) -> None:
    limit = service.config.server.max_body_bytes
    body = json.dumps({"scope": "user:update", "pad": "x" * limit}).encode()
    resp = await client.post("/stepup/check", data=body, headers={**ALICE, "Content-Type": "application/json"})
    problem = await problem_of(resp, 413, "payload_too_large")
    assert problem["limit"] == limit


async def test_body_over_the_limit_is_413_when_streamed_without_length(client: Any, service: Any) -> None:
    limit = service.config.server.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"scope": "user:update", "pad": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    resp = await client.post("/stepup/check", data=chunks(), headers={**ALICE, "Content-Type": "application/json"})
    assert "Content-Length" not in resp.request_info.headers
    await problem_of(resp, 413, "payload_too_large")


async def test_aiohttp_own_413_becomes_a_problem(http_client: Any) -> None:
    # aiohttp refuses a body past client_max_size itself when a handler reads it whole; the
    # stepup middleware turns that refusal into a problem like every other.
    app = web.Application(client_max_size=1024, middlewares=[problem_middleware])

    async def reads_everything(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="read")

    app.router.add_post("/raw", reads_everything)
    client = await http_client(app)
    resp = await client.post("/raw", data=b"x" * 4096, headers={"Content-Type": "application/octet-stream"})
    await problem_of(resp, 413, "payload_too_large")


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stepup/nothing", "/stepup/", "/stepup/challenges/a/b", "/stepup/callback"])
async def test_unknown_route_under_the_prefix_is_a_404_problem(client: Any, path: str) -> None:
    await problem_of(await client.get(path, headers=ALICE), 404, "not_found")


@pytest.mark.parametrize(
    ("verb", "path", "allowed"),
    [
        ("PUT", "/stepup/check", "POST"),
        ("GET", "/stepup/verify", "POST"),
        ("POST", "/stepup/methods", "GET"),
        ("PUT", "/stepup/credentials/abc", "DELETE, PATCH"),
    ],
)
async def test_wrong_http_method_is_a_405_problem(client: Any, verb: str, path: str, allowed: str) -> None:
    resp = await client.request(verb, path, headers=ALICE)
    problem = await problem_of(resp, 405, "http_method_not_allowed")
    assert resp.headers["Allow"] == allowed
    assert problem["allowed"] == allowed.split(", ")


@pytest.mark.parametrize("spec", [s for s in ROUTES if s.authenticated], ids=lambda s: f"{s.method} {s.path}")
async def test_every_authenticated_route_refuses_an_anonymous_caller(client: Any, spec: Any) -> None:
    path = "/stepup" + spec.path.replace("{id}", "x1").replace("{method}", "pin")
    kwargs = {"json": {}} if spec.request is not None else {}
    resp = await client.request(spec.method, path, headers={"Authorization": "Bearer nobody"}, **kwargs)
    await problem_of(resp, 401, "unauthenticated")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# --- methods and scopes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/stepup/challenges", {"method": "sms", "requestedScopes": ["user:update"]}),
        ("/stepup/verify", {"method": "sms", "response": {}}),
        ("/stepup/enrollments", {"method": "sms"}),
    ],
)
async def test_unknown_method_is_404(client: Any, path: str, body: dict[str, Any]) -> None:
    problem = await problem_of(await client.post(path, json=body, headers=ALICE), 404, "unknown_method")
    assert "stepup-sms" in problem["detail"]
    assert problem["method"] == "sms"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/stepup/check", {"scope": "Wallet Export"}, "scope"),
        ("/stepup/check", {"scope": "billing:payout"}, "scope"),
        ("/stepup/check", {"scope": ""}, "scope"),
        ("/stepup/challenges", {"method": "pin", "requestedScopes": ["user:update", "nope"]}, "requestedScopes[1]"),
        ("/stepup/verify", {"method": "pin", "response": {}, "requestedScopes": ["a:b:c:d"]}, "requestedScopes[0]"),
    ],
)
async def test_invalid_or_unknown_scope_is_422(client: Any, path: str, body: dict[str, Any], field: str) -> None:
    problem = await problem_of(await client.post(path, json=body, headers=ALICE), 422, "invalid_scope")
    assert [e["path"] for e in problem["errors"]] == [field]


# --- what the service refuses --------------------------------------------------------------------


async def test_credential_and_challenge_not_found(client: Any) -> None:
    await problem_of(
        await client.patch("/stepup/credentials/cred_missing", json={"alias": "x"}, headers=ALICE),
        404,
        "credential_not_found",
    )
    await problem_of(
        await client.delete("/stepup/credentials/cred_missing", headers=ALICE), 404, "credential_not_found"
    )
    await problem_of(await client.get("/stepup/challenges/chl_missing", headers=ALICE), 404, "challenge_not_found")
    await enrol(client, "pin")
    await problem_of(await begin(client, credentialId="cred_other"), 404, "credential_not_found")
    challenge = (await (await begin(client)).json())["challengeId"]
    # Another user's challenge reads as unknown.
    await problem_of(await client.get(f"/stepup/challenges/{challenge}", headers=BOB), 404, "challenge_not_found")


async def test_expired_challenge_is_410(client: Any, clock: Any) -> None:
    await enrol(client, "pin")
    challenge = (await (await begin(client)).json())["challengeId"]
    clock.advance(301)
    await problem_of(await verify(client, challenge, "1234"), 410, "challenge_expired")


async def test_wrong_and_malformed_answers_are_400(client: Any) -> None:
    await enrol(client, "pin")
    challenge = (await (await begin(client)).json())["challengeId"]
    await problem_of(await verify(client, challenge, "9999"), 400, "verification_failed")
    problem = await problem_of(await verify(client, challenge, None), 400, "invalid_response")
    assert "response.code" in problem["detail"]
    assert problem["field"] == "response.code"


async def test_replay_detected_is_400(client: Any) -> None:
    await enrol(client, "fault")
    challenge = (await (await begin(client, "fault")).json())["challengeId"]
    resp = await client.post(
        "/stepup/verify",
        json={"method": "fault", "challengeId": challenge, "response": {"raise": "replay"}},
        headers=ALICE,
    )
    await problem_of(resp, 400, "replay_detected")


async def test_missing_challenge_for_a_challenge_method_is_422(client: Any) -> None:
    await enrol(client, "pin")
    problem = await problem_of(
        await verify(client, None, "1234", requestedScopes=["user:update"]), 422, "validation_error"
    )
    assert [e["path"] for e in problem["errors"]] == ["challengeId"]


async def test_attempt_budget_without_challenge_is_429(client: Any) -> None:
    await enrol(client, "quickpin")
    for _ in range(4):
        await problem_of(
            await verify(client, None, "0000", method="quickpin", requestedScopes=["user:update"]),
            400,
            "verification_failed",
        )
    # The fifth wrong answer uses the budget up; after it even the right PIN is refused.
    last = await verify(client, None, "0000", method="quickpin", requestedScopes=["user:update"])
    await problem_of(last, 429, "attempts_exhausted")
    resp = await verify(client, None, "1234", method="quickpin", requestedScopes=["user:update"])
    await problem_of(resp, 429, "attempts_exhausted")


async def test_lockout_is_429_with_retry_after(client: Any) -> None:
    await enrol(client, "pin")
    for _ in range(2):
        challenge = (await (await begin(client)).json())["challengeId"]
        for _ in range(4):
            await problem_of(await verify(client, challenge, "0000"), 400, "verification_failed")
        await problem_of(await verify(client, challenge, "0000"), 429, "attempts_exhausted")
    resp = await begin(client)
    problem = await problem_of(resp, 429, "locked_out")
    assert resp.headers["Retry-After"] == "900"
    assert problem["retryAfter"] == 900


async def test_begin_rate_limit_is_429_with_retry_after(client: Any) -> None:
    await enrol(client, "limited")
    for _ in range(2):
        assert (await begin(client, "limited")).status == 201
    resp = await begin(client, "limited")
    problem = await problem_of(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == "60"
    assert problem["retryAfter"] == 60


async def test_no_eligible_credential_is_409(client: Any) -> None:
    problem = await problem_of(await begin(client), 409, "no_eligible_credential")
    assert "enrol" in problem["detail"]


async def test_reauth_method_is_refused_once_the_user_has_mfa(client: Any) -> None:
    start = await client.post("/stepup/enrollments", json={"method": "link"}, headers=ALICE)
    state = (await start.json())["data"]["state"]
    assert (await client.get("/stepup/callback/link", params={"state": state, "code": "approved"})).status == 200
    # With only re-auth, link may mint credential:link and the PIN can be added.
    begin_link = await begin(client, "link", ("credential:link",))
    link_state = (await begin_link.json())["data"]["state"]
    assert (await client.get("/stepup/callback/link", params={"state": link_state, "code": "approved"})).status == 200
    grant = await (
        await client.get(f"/stepup/challenges/{(await begin_link.json())['challengeId']}", headers=ALICE)
    ).json()
    await enrol(client, "pin", token=grant["grant"]["elevatedAccessToken"])

    problem = await problem_of(await begin(client, "link"), 403, "method_not_allowed")
    assert "MFA" in problem["detail"]


async def test_challenge_used_and_pending_are_409(client: Any) -> None:
    start = await client.post("/stepup/enrollments", json={"method": "link"}, headers=ALICE)
    enrollment = await start.json()
    # A redirect enrolment completes through its callback, not by posting an answer.
    await problem_of(
        await client.post(f"/stepup/enrollments/{enrollment['enrollmentId']}", json={"response": {}}, headers=ALICE),
        409,
        "challenge_pending",
    )
    assert (
        await client.get("/stepup/callback/link", params={"state": enrollment["data"]["state"], "code": "approved"})
    ).status == 200
    # Completed by its callback: posting an answer now is a conflict.
    await problem_of(
        await client.post(f"/stepup/enrollments/{enrollment['enrollmentId']}", json={"response": {}}, headers=ALICE),
        409,
        "challenge_used",
    )
    # A redirect method's step-up is not answered through /verify at all.
    started = await (await begin(client, "link")).json()
    resp = await client.post(
        "/stepup/verify",
        json={"method": "link", "challengeId": started["challengeId"], "response": {"code": "approved"}},
        headers=ALICE,
    )
    await problem_of(resp, 403, "method_not_allowed")


async def test_enrollment_failed_is_400(client: Any) -> None:
    resp = await client.post(
        "/stepup/enrollments", json={"method": "fault", "params": {"raise": "enrollment"}}, headers=ALICE
    )
    await problem_of(resp, 400, "enrollment_failed")


async def test_delivery_failure_is_502_without_infrastructure_details(client: Any) -> None:
    await enrol(client, "fault")
    resp = await begin(client, "fault", params={"raise": "delivery"})
    problem = await problem_of(resp, 502, "delivery_failed")
    assert "smtp.internal" not in json.dumps(problem)


async def test_crashing_method_is_500_with_a_generic_detail(client: Any, caplog: Any) -> None:
    await enrol(client, "fault")
    with caplog.at_level(logging.ERROR):
        resp = await begin(client, "fault", params={"raise": "crash"})
    problem = await problem_of(resp, 500, "plugin_error")
    assert "boom" not in json.dumps(problem) and "/srv" not in json.dumps(problem)
    assert "boom at /srv/secret/path" in caplog.text


async def test_store_unreachable_is_503(client: Any, store: Any) -> None:
    await enrol(client, "pin")
    store.down = True
    resp = await client.get("/stepup/credentials", headers=ALICE)
    problem = await problem_of(resp, 503, "store_unavailable")
    assert "does not answer" not in problem["detail"]
    # The check fails closed instead: required, never a grant.
    check = await client.post("/stepup/check", json={"scope": "user:update"}, headers=ALICE)
    assert check.status == 200
    assert (await check.json())["isRequired"] is True


async def test_identify_crash_is_a_500_problem_and_logged(service: Any, http_client: Any, caplog: Any) -> None:
    async def broken_identify(request: web.Request) -> Principal | None:
        raise RuntimeError("session backend exploded at db.internal:5432")

    client = await http_client(build_app(service, broken_identify))
    with caplog.at_level(logging.ERROR, logger="stepup.server"):
        resp = await client.get("/stepup/credentials", headers=ALICE)
    problem = await problem_of(resp, 500, "server_error")
    assert "exploded" not in json.dumps(problem)
    assert "Traceback" in caplog.text and "db.internal:5432" in caplog.text


# --- the mapping itself --------------------------------------------------------------------------


def _instance(cls: type[errors.StepUpError]) -> errors.StepUpError:
    if issubclass(cls, errors.InvalidScope):
        return cls("bad scope", "scope")
    if issubclass(cls, errors.ValidationError):
        return cls("bad field", [{"path": "x", "message": "bad"}])
    if issubclass(cls, errors.StepUpRequired):
        return cls("step up", "wallet:export")
    if issubclass(cls, errors.RateLimited):
        return cls("slow down", 12.5)
    return cls("internal message with /srv/path")


@pytest.mark.parametrize("cls", errors.ALL_ERRORS, ids=lambda c: c.code)
def test_every_error_class_maps_to_a_valid_problem(cls: type[errors.StepUpError]) -> None:
    error = _instance(cls)
    response = problem_response(error)
    assert response.status == cls.status
    assert response.content_type == PROBLEM
    assert response.text is not None
    body = json.loads(response.text)
    assert body["code"] == cls.code and body["status"] == cls.status and body["title"] == cls.title
    validator = ResponseValidator(build_document("/stepup"), prefix="/stepup")
    validator.check("GET", "/elsewhere", cls.status, PROBLEM, response.text.encode())
    if cls.status >= 500:
        assert "/srv/path" not in response.text
    if cls is errors.RateLimited:
        assert response.headers["Retry-After"] == "13"
    if cls is errors.StepUpRequired:
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_user_authentication"')


def test_the_response_validator_rejects_an_undocumented_answer() -> None:
    validator = ResponseValidator(build_document("/stepup"), prefix="/stepup")
    with pytest.raises(ResponseMismatch, match="not documented"):
        validator.check("GET", "/stepup/methods", 418, "application/json", b"[]")
    with pytest.raises(ResponseMismatch, match="does not match"):
        validator.check("GET", "/stepup/methods", 200, "application/json", b'[{"name": 1}]')
    with pytest.raises(ResponseMismatch, match="problem"):
        validator.check("GET", "/stepup/unknown", 404, "text/plain", b"404: Not Found")
    with pytest.raises(ResponseMismatch, match="content type"):
        validator.check("POST", "/stepup/check", 200, "text/html", b"<p>")
    with pytest.raises(ResponseMismatch, match="does not match"):
        validator.check("POST", "/stepup/check", 422, PROBLEM, b'{"code": "x"}')
