"""Every stepup route end to end over loopback: a real StepUpService (memory store), the PIN test
method and a redirect method, an aiohttp client whose every answer is checked against the
server's OpenAPI document."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from openapi_spec_validator import validate as validate_openapi

from stepup_core import errors
from stepup_core.plugins import describe_plugins
from stepup_core.server import document_for, mount
from stepup_core.testing.methods import RedirectVerifier

ALICE = {"Authorization": "Bearer alice:s1"}
ALICE_OTHER_SESSION = {"Authorization": "Bearer alice:s2"}
BOB = {"Authorization": "Bearer bob:s1"}
CAROL = {"Authorization": "Bearer carol:s1"}


@pytest.fixture
def methods(methods: Any) -> Any:
    methods.verifiers.append(RedirectVerifier(name="link"))
    return methods


@pytest.fixture(params=["aiohttp", "asgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    """Every test on ``client`` runs against both adapters of the one route table."""
    return str(request.param)


@pytest.fixture
async def client(adapter_client: Any) -> Any:
    return adapter_client


async def enrol_pin(
    client: Any, headers: dict[str, str], pin: str = "1234", token: str | None = None
) -> dict[str, Any]:
    extra = {"X-Elevated-Access-Token": token} if token else {}
    start = await client.post(
        "/stepup/enrollments", json={"method": "pin", "params": {"pin": pin}}, headers={**headers, **extra}
    )
    assert start.status == 201, await start.text()
    body = await start.json()
    assert start.headers["Location"] == f"/stepup/enrollments/{body['enrollmentId']}"
    done = await client.post(
        f"/stepup/enrollments/{body['enrollmentId']}", json={"response": {"pin": pin}}, headers=headers
    )
    assert done.status == 200, await done.text()
    return dict(await done.json())


async def step_up(client: Any, headers: dict[str, str], scopes: list[str], pin: str = "1234") -> dict[str, Any]:
    begin = await client.post("/stepup/challenges", json={"method": "pin", "requestedScopes": scopes}, headers=headers)
    assert begin.status == 201, await begin.text()
    challenge = await begin.json()
    verified = await client.post(
        "/stepup/verify",
        json={"method": "pin", "challengeId": challenge["challengeId"], "response": {"code": pin}},
        headers=headers,
    )
    assert verified.status == 200, await verified.text()
    return dict(await verified.json())


# --- public routes -----------------------------------------------------------------------------


async def test_methods_lists_installed_methods_without_a_session(client: Any) -> None:
    resp = await client.get("/stepup/methods")
    assert resp.status == 200
    methods = {m["name"]: m for m in await resp.json()}
    assert set(methods) == {"pin", "link"}
    assert methods["pin"] == {
        "name": "pin",
        "factor": "mfa",
        "formats": ["totp"],
        "interaction": "code",
        "fallback": False,
        "requiresChallenge": True,
        "plugin": "test-methods",
        "package": "stepup-testing",
        "label": None,
        "prompt": None,
        "browserModule": None,
    }
    assert methods["link"]["interaction"] == "redirect"


async def test_plugins_route_matches_describe_plugins(client: Any, service: Any) -> None:
    resp = await client.get("/stepup/plugins")
    assert resp.status == 200
    body = await resp.json()
    assert body == json.loads(json.dumps(describe_plugins(service.pm)))
    assert any(p["name"] == "test-methods" and "stepup_register_verifiers" in p["hooks"] for p in body)


async def test_openapi_document_is_valid_and_covers_every_route(client: Any, service: Any) -> None:
    resp = await client.get("/stepup/openapi.json")
    assert resp.status == 200
    document = await resp.json()
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"
    assert document == document_for(service, "/stepup")
    assert document["components"]["schemas"]["MethodName"]["enum"] == sorted(m.name for m in service.methods())

    served = set()
    if isinstance(client.app, web.Application):
        for route in client.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("formatter") or info.get("path")
            if route.method != "HEAD" and path and path.startswith("/stepup/"):
                served.add((route.method.lower(), path))
    else:  # the ASGI application routes by its own table
        served = {(spec.method.lower(), client.app.prefix + spec.path) for spec in client.app.router.routes}
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert served == documented
    assert len(documented) == 18
    # Every body has a component schema; every error is a problem.
    schemas = document["components"]["schemas"]
    for name in (
        "CheckRequest",
        "ChallengeRequest",
        "VerifyRequest",
        "EnrollmentRequest",
        "EnrollmentCompletion",
        "CredentialUpdate",
        "CheckResult",
        "ChallengeStart",
        "ChallengeState",
        "IssuedToken",
        "EnrollmentStart",
        "CredentialView",
        "MethodInfo",
        "Problem",
        "RevokedGrants",
        "PluginInfo",
    ):
        assert name in schemas
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }, (method, path, status)


# --- check, enrolment, credentials -------------------------------------------------------------


async def test_check_routes_a_new_user_to_reauth_and_an_mfa_user_to_mfa(client: Any) -> None:
    resp = await client.post("/stepup/check", json={"scope": "wallet:export"}, headers=ALICE)
    assert resp.status == 200
    assert await resp.json() == {
        "scope": "wallet:export",
        "isRequired": True,
        "route": "reauth",
        "credentials": [],
        "defaultCredentialId": None,
        "reasons": ["scope_policy"],
        "methods": [],
    }
    credential = await enrol_pin(client, ALICE)
    body = await (await client.post("/stepup/check", json={"scope": "wallet:export"}, headers=ALICE)).json()
    assert body["isRequired"] is True
    assert body["route"] == "mfa"
    assert body["defaultCredentialId"] == credential["id"]
    assert [c["id"] for c in body["credentials"]] == [credential["id"]]
    assert body["methods"] == ["pin"]


async def test_check_reads_the_elevated_token_header(client: Any) -> None:
    await enrol_pin(client, ALICE)
    token = (await step_up(client, ALICE, ["user:update"]))["elevatedAccessToken"]
    with_token = {**ALICE, "X-Elevated-Access-Token": token}

    covered = await (await client.post("/stepup/check", json={"scope": "user:update"}, headers=with_token)).json()
    assert covered["isRequired"] is False
    other_scope = await (await client.post("/stepup/check", json={"scope": "user:delete"}, headers=with_token)).json()
    assert other_scope["isRequired"] is True
    other_session = {**ALICE_OTHER_SESSION, "X-Elevated-Access-Token": token}
    assert (await (await client.post("/stepup/check", json={"scope": "user:update"}, headers=other_session)).json())[
        "isRequired"
    ] is True
    bob = {**BOB, "X-Elevated-Access-Token": token}
    assert (await (await client.post("/stepup/check", json={"scope": "user:update"}, headers=bob)).json())[
        "isRequired"
    ] is True


async def test_enrolment_and_credential_listing_never_show_secrets(client: Any) -> None:
    credential = await enrol_pin(client, ALICE, pin="4321")
    assert credential["method"] == "pin"
    assert credential["factor"] == "mfa"
    assert credential["alias"] == "PIN"
    resp = await client.get("/stepup/credentials", headers=ALICE)
    assert resp.status == 200
    text = await resp.text()
    assert [c["id"] for c in json.loads(text)] == [credential["id"]]
    assert "pinHash" not in text and "4321" not in text
    # Bob sees none of Alice's.
    assert await (await client.get("/stepup/credentials", headers=BOB)).json() == []


async def test_second_enrolment_needs_a_credential_link_token(client: Any) -> None:
    await enrol_pin(client, ALICE)
    refused = await client.post("/stepup/enrollments", json={"method": "pin", "params": {"pin": "5555"}}, headers=ALICE)
    assert refused.status == 401
    assert 'scope="credential:link"' in refused.headers["WWW-Authenticate"]
    problem = await refused.json()
    assert problem["code"] == "insufficient_user_authentication"
    assert problem["check"]["route"] == "mfa"

    token = (await step_up(client, ALICE, ["credential:link"]))["elevatedAccessToken"]
    second = await enrol_pin(client, ALICE, pin="5555", token=token)
    listed = await (await client.get("/stepup/credentials", headers=ALICE)).json()
    assert second["id"] in [c["id"] for c in listed] and len(listed) == 2


# --- challenges and verification ---------------------------------------------------------------


async def test_challenge_verify_and_status(client: Any, service: Any) -> None:
    credential = await enrol_pin(client, ALICE)
    begin = await client.post(
        "/stepup/challenges", json={"method": "pin", "requestedScopes": ["wallet:export"]}, headers=ALICE
    )
    assert begin.status == 201
    challenge = await begin.json()
    assert begin.headers["Location"] == f"/stepup/challenges/{challenge['challengeId']}"
    assert challenge["method"] == "pin"
    assert challenge["interaction"] == "code"
    assert challenge["credentialId"] == credential["id"]
    assert challenge["requestedScopes"] == ["wallet:export"]
    assert challenge["expiresAt"] == service.clock.now() + 300

    status = await client.get(f"/stepup/challenges/{challenge['challengeId']}", headers=ALICE)
    assert status.status == 200
    assert await status.json() == {
        "challengeId": challenge["challengeId"],
        "method": "pin",
        "status": "pending",
        "expiresAt": challenge["expiresAt"],
        "failure": None,
        "grant": None,
        "credentialId": None,
    }

    verified = await client.post(
        "/stepup/verify",
        json={"method": "pin", "challengeId": challenge["challengeId"], "response": {"code": "1234"}},
        headers=ALICE,
    )
    assert verified.status == 200
    issued = await verified.json()
    assert issued["elevatedAccessToken"].startswith("sut_")
    assert issued["scopes"] == ["wallet:export"]
    assert issued["singleUse"] is True
    assert issued["method"] == "pin"
    assert issued["expiresAt"] == service.clock.now() + 300

    # The challenge is used up: a second answer is refused.
    again = await client.post(
        "/stepup/verify",
        json={"method": "pin", "challengeId": challenge["challengeId"], "response": {"code": "1234"}},
        headers=ALICE,
    )
    assert again.status == 404
    assert (await again.json())["code"] == "challenge_not_found"


async def test_time_bound_scope_gets_a_reusable_token(client: Any, service: Any) -> None:
    await enrol_pin(client, ALICE)
    issued = await step_up(client, ALICE, ["user:update"])
    assert issued["singleUse"] is False
    assert issued["expiresAt"] == service.clock.now() + 600


# --- credential management ---------------------------------------------------------------------


async def test_update_credential_needs_credential_update_token(client: Any) -> None:
    credential = await enrol_pin(client, ALICE)
    path = f"/stepup/credentials/{credential['id']}"
    refused = await client.patch(path, json={"alias": "Desk PIN"}, headers=ALICE)
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].endswith('scope="credential:update"')

    token = (await step_up(client, ALICE, ["credential:update"]))["elevatedAccessToken"]
    with_token = {**ALICE, "X-Elevated-Access-Token": token}
    updated = await client.patch(path, json={"alias": "Desk PIN", "isDefault": True}, headers=with_token)
    assert updated.status == 200
    body = await updated.json()
    assert body["alias"] == "Desk PIN" and body["isDefault"] is True
    # Time-bound: the same token works again within its lifetime.
    again = await client.patch(path, json={"alias": "Desk"}, headers=with_token)
    assert again.status == 200 and (await again.json())["alias"] == "Desk"
    # A token for another scope does not.
    wrong = (await step_up(client, ALICE, ["user:update"]))["elevatedAccessToken"]
    assert (
        await client.patch(path, json={"alias": "x"}, headers={**ALICE, "X-Elevated-Access-Token": wrong})
    ).status == 401


async def test_delete_credential_needs_credential_unlink_token(client: Any) -> None:
    credential = await enrol_pin(client, ALICE)
    path = f"/stepup/credentials/{credential['id']}"
    refused = await client.delete(path, headers=ALICE)
    assert refused.status == 401
    assert 'scope="credential:unlink"' in refused.headers["WWW-Authenticate"]
    assert len(await (await client.get("/stepup/credentials", headers=ALICE)).json()) == 1

    token = (await step_up(client, ALICE, ["credential:unlink"]))["elevatedAccessToken"]
    deleted = await client.delete(path, headers={**ALICE, "X-Elevated-Access-Token": token})
    assert deleted.status == 204
    assert await deleted.read() == b""
    assert await (await client.get("/stepup/credentials", headers=ALICE)).json() == []


async def test_revoke_grants_ends_the_sessions_tokens(client: Any) -> None:
    await enrol_pin(client, ALICE)
    first = (await step_up(client, ALICE, ["user:update"]))["elevatedAccessToken"]
    await step_up(client, ALICE, ["user:delete"])
    other_session = (await step_up(client, ALICE_OTHER_SESSION, ["user:update"]))["elevatedAccessToken"]

    resp = await client.delete("/stepup/grants", headers=ALICE)
    assert resp.status == 200
    assert await resp.json() == {"revoked": 2}
    check = await client.post(
        "/stepup/check", json={"scope": "user:update"}, headers={**ALICE, "X-Elevated-Access-Token": first}
    )
    assert (await check.json())["isRequired"] is True
    # The other session keeps its token.
    kept = await client.post(
        "/stepup/check",
        json={"scope": "user:update"},
        headers={**ALICE_OTHER_SESSION, "X-Elevated-Access-Token": other_session},
    )
    assert (await kept.json())["isRequired"] is False
    assert await (await client.delete("/stepup/grants", headers=ALICE)).json() == {"revoked": 0}


# --- redirect methods: callback and status polling ---------------------------------------------


async def _enrol_link(client: Any, headers: dict[str, str], sub: str) -> None:
    start = await client.post("/stepup/enrollments", json={"method": "link"}, headers=headers)
    assert start.status == 201, await start.text()
    url = (await start.json())["data"]["authorizationUrl"]
    query = parse_qs(urlsplit(url).query)
    callback = urlsplit(query["redirect_uri"][0])
    page = await client.get(callback.path, params={"state": query["state"][0], "code": "approved", "sub": sub})
    assert page.status == 200, await page.text()


async def test_redirect_method_callback_then_status_hands_over_the_grant_once(client: Any) -> None:
    await _enrol_link(client, CAROL, "carol-at-provider")
    begin = await client.post(
        "/stepup/challenges", json={"method": "link", "requestedScopes": ["user:update"]}, headers=CAROL
    )
    assert begin.status == 201
    challenge = await begin.json()
    assert challenge["interaction"] == "redirect"
    query = parse_qs(urlsplit(challenge["data"]["authorizationUrl"]).query)
    redirect_uri = urlsplit(query["redirect_uri"][0])
    # The callback URL is the server's own loopback address, not anything a caller sent.
    assert redirect_uri.scheme == "http"
    assert redirect_uri.hostname == "127.0.0.1"
    assert redirect_uri.port == client.server.port
    assert redirect_uri.path == "/stepup/callback/link"

    pending = await client.get(f"/stepup/challenges/{challenge['challengeId']}", headers=CAROL)
    assert (await pending.json())["status"] == "pending"

    page = await client.get(
        redirect_uri.path, params={"state": query["state"][0], "code": "approved"}, headers={"Accept": "text/html"}
    )
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "You can close this window" in await page.text()
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"

    # Another session of the same user cannot pick the grant up.
    stranger = await client.get(
        f"/stepup/challenges/{challenge['challengeId']}", headers={"Authorization": "Bearer carol:s2"}
    )
    assert stranger.status == 404

    picked = await client.get(f"/stepup/challenges/{challenge['challengeId']}", headers=CAROL)
    assert picked.status == 200
    state = await picked.json()
    assert state["status"] == "consumed"
    assert state["grant"]["elevatedAccessToken"].startswith("sut_")
    assert state["grant"]["scopes"] == ["user:update"]
    check = await client.post(
        "/stepup/check",
        json={"scope": "user:update"},
        headers={**CAROL, "X-Elevated-Access-Token": state["grant"]["elevatedAccessToken"]},
    )
    assert (await check.json())["isRequired"] is False

    second = await client.get(f"/stepup/challenges/{challenge['challengeId']}", headers=CAROL)
    assert second.status in (404, 409)
    assert (await second.json()).get("grant") is None

    # The state is single use.
    replay = await client.get(redirect_uri.path, params={"state": query["state"][0], "code": "approved"})
    assert replay.status == 404
    assert (await replay.json())["code"] == "challenge_not_found"


async def test_callback_failure_is_a_problem_page_for_browsers_and_json_otherwise(client: Any) -> None:
    await _enrol_link(client, CAROL, "carol-at-provider")
    states = []
    for _ in range(2):
        begin = await client.post(
            "/stepup/challenges", json={"method": "link", "requestedScopes": ["user:update"]}, headers=CAROL
        )
        states.append(parse_qs(urlsplit((await begin.json())["data"]["authorizationUrl"]).query)["state"][0])

    page = await client.get(
        "/stepup/callback/link",
        params={"state": states[0], "code": "<script>alert(1)</script>"},
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    assert page.status == 400
    assert page.content_type == "text/html"
    text = await page.text()
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "verification_failed" in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

    problem = await client.get("/stepup/callback/link", params={"state": states[1], "code": "denied"})
    assert problem.status == 400
    assert problem.content_type == "application/problem+json"
    assert (await problem.json())["code"] == "verification_failed"

    missing_state = await client.get("/stepup/callback/link", params={"code": "approved"})
    assert missing_state.status == 422
    assert (await missing_state.json())["errors"][0]["path"] == "state"

    not_redirect = await client.get("/stepup/callback/pin", params={"state": "x"})
    assert not_redirect.status == 404
    assert (await not_redirect.json())["code"] == "unknown_method"


async def test_a_provider_refusal_without_state_is_a_page_a_person_understands(client: Any) -> None:
    """Some providers send the browser back with ``error=`` and no ``state``: the person sees what
    happened (the sign-in was not completed, nothing changed, start again), not "Invalid payload"."""
    page = await client.get(
        "/stepup/callback/link",
        params={"error": "access_denied", "error_description": "The user cancelled <b>here</b>"},
        headers={"Accept": "text/html"},
    )
    assert page.status == 422 and page.content_type == "text/html"
    text = await page.text()
    assert "<h1>Sign-in not completed</h1>" in text
    assert "did not complete the sign-in (access_denied)" in text
    assert "start again from the application" in text
    assert "Invalid payload" not in text and "validation_error" not in text
    assert "cancelled" not in text  # the provider's free text is not echoed
    problem = await client.get("/stepup/callback/link", params={"error": "<script>x</script>"})
    assert problem.status == 422 and problem.content_type == "application/problem+json"
    body = await problem.json()
    assert body["code"] == "sign_in_not_completed" and body["providerError"] == "unknown"
    assert body["errors"][0]["path"] == "state"
    assert "<script>" not in json.dumps(body)


# --- mounting ------------------------------------------------------------------------------------


async def test_mount_under_a_custom_prefix_inside_an_existing_application(
    service: Any, identify: Any, http_client: Any
) -> None:
    app = web.Application()

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="home")

    app.router.add_get("/", home)
    mount(app, service, identify, prefix="/auth/stepup/")
    client = await http_client(app, prefix="/auth/stepup")

    assert (await (await client.get("/")).text()) == "home"
    methods = await client.get("/auth/stepup/methods")
    assert methods.status == 200
    document = await (await client.get("/auth/stepup/openapi.json")).json()
    assert all(path.startswith("/auth/stepup/") for path in document["paths"])
    # Redirect callbacks follow the mount.
    await _enrol_link(client_prefix(client, "/auth/stepup"), CAROL, "carol")
    assert service.callback_url("link").endswith("/auth/stepup/callback/link")
    # The old prefix is the application's, not stepup's.
    assert (await client.get("/stepup/methods")).status == 404


def client_prefix(client: Any, prefix: str) -> Any:
    """The client with ``/stepup`` paths rewritten to ``prefix``."""

    class Rewriting:
        def __getattr__(self, name: str) -> Any:
            method = getattr(client, name)

            def call(path: str, *args: Any, **kwargs: Any) -> Any:
                return method(
                    path.replace("/stepup", prefix, 1) if path.startswith("/stepup/") else path, *args, **kwargs
                )

            return call

    return Rewriting()


async def test_mount_refuses_the_root_prefix(service: Any, identify: Any) -> None:
    with pytest.raises(errors.ConfigError, match="prefix"):
        mount(web.Application(), service, identify, prefix="/")


async def test_callback_url_ignores_the_callers_host_header(client: Any, service: Any) -> None:
    await _enrol_link(client, CAROL, "carol-at-provider")  # the first request fills in the server's address
    service.public_url = None
    begin = await client.post(
        "/stepup/challenges",
        json={"method": "link", "requestedScopes": ["user:update"]},
        headers={**CAROL, "Host": "attacker.example", "X-Forwarded-Host": "attacker.example"},
    )
    assert begin.status == 201
    redirect_uri = parse_qs(urlsplit((await begin.json())["data"]["authorizationUrl"]).query)["redirect_uri"][0]
    assert urlsplit(redirect_uri).hostname == "127.0.0.1"
    assert "attacker" not in redirect_uri


async def test_a_configured_public_url_is_used_for_callbacks(client: Any, service: Any) -> None:
    service.public_url = "https://app.example.com"
    start = await client.post("/stepup/enrollments", json={"method": "link"}, headers=CAROL)
    redirect_uri = parse_qs(urlsplit((await start.json())["data"]["authorizationUrl"]).query)["redirect_uri"][0]
    assert redirect_uri == "https://app.example.com/stepup/callback/link"
