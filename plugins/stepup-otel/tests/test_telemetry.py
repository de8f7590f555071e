"""Metrics and spans of real flows over HTTP, read back through the SDK's in-memory reader and
exporter."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from stepup_otel.telemetry import StepUpTelemetry

from stepup_core import errors, hookimpl
from stepup_core.models import CodeDelivery, Credential, CredentialFormat, Factor
from stepup_core.testing.methods import PinVerifier, RedirectVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token
from stepup_core.verifier import Attempt, RateLimit, VerifierContext

PIN = "7319502846"
WRONG_PIN = "1357924680"
EMAIL = "alice.private@example.test"
PROTECTED = {"/wallet/export": "wallet:export", "/profile": "user:update"}


def mfa_pin(**changes: Any) -> PinVerifier:
    return attrs.evolve(PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False), **changes)


def app_email(user: str, address: str) -> Credential:
    return Credential(
        id=f"app-email-{user}", user_id=user, method="", format=CredentialFormat.EMAIL, factor=Factor.REAUTH,
        created_at=0.0, sign_in=True, identifier=address, alias="a***@example.test",
    )


async def step_up(stack: StepUpStack, user: str, scope: str, pin: str = PIN) -> tuple[int, Any]:
    status, start = await stack.api(user, "POST", "/challenges", {"method": "pin", "requestedScopes": [scope]})
    assert status == 201, start
    return await stack.api(
        user, "POST", "/verify", {"method": "pin", "challengeId": start["challengeId"], "response": {"code": pin}}
    )


async def call(stack: StepUpStack, path: str, token: str | None, user: str = "alice") -> int:
    async with stack.http.post(stack.base_url + path, headers=stack.headers(user, token)) as response:
        return response.status


async def test_a_step_up_counts_checks_challenges_verifications_and_grants(recorded: Any) -> None:
    methods = ThrowawayPlugin([mfa_pin()])
    async with StepUpStack.start(plugins=[methods, recorded.telemetry], protected=PROTECTED) as stack:
        status, _ = await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        assert status == 201
        status, body = await stack.api("alice", "POST", "/check", {"scope": "wallet:export"})
        assert status == 200 and body["isRequired"] is True
        assert await call(stack, "/wallet/export", None) == 401
        status, body = await step_up(stack, "alice", "wallet:export", WRONG_PIN)
        assert status == 400 and body["code"] == "verification_failed"
        status, grant = await step_up(stack, "alice", "wallet:export")
        assert status == 200
        token = grant["elevatedAccessToken"]
        status, body = await stack.api("alice", "POST", "/check", {"scope": "wallet:export"}, token=token)
        assert body["isRequired"] is False
        assert await call(stack, "/wallet/export", token) == 200
        assert await call(stack, "/wallet/export", token) == 401  # single use: refused the second time

    assert recorded.value("stepup.checks", scope="wallet:export", required="true") == 1
    assert recorded.value("stepup.checks", scope="wallet:export", required="false") == 1
    assert recorded.value("stepup.challenges", method="pin") == 2
    assert recorded.value("stepup.verifications", method="pin", outcome="success") == 1
    assert recorded.value("stepup.verifications", method="pin", outcome="verification_failed") == 1
    assert recorded.value("stepup.verification.duration", method="pin") == 2
    assert recorded.value("stepup.grants.issued", method="pin", token="single_use") == 1
    assert recorded.value("stepup.grants.used", method="pin", token="single_use") == 1
    assert recorded.value("stepup.grants.refused", scope="wallet:export", reason="token_not_valid") == 1
    assert recorded.value("stepup.guard.duration", scope="wallet:export", outcome="granted") == 1
    refused = {"scope": "wallet:export", "outcome": "insufficient_user_authentication"}
    assert recorded.value("stepup.guard.duration", **refused) == 2
    assert recorded.value("stepup.credential.changes", method="pin", change="linked") == 1
    assert recorded.value("stepup.verifier.duration", method="pin", call="begin_enrollment") == 1
    assert recorded.value(
        "http.server.request.duration", **{"http.route": "/stepup/verify", "http.response.status_code": 400}
    ) == 1
    [guard_sum] = [p.total for p in recorded.points("stepup.guard.duration") if p.attributes["outcome"] == "granted"]
    assert guard_sum is not None and 0 < guard_sum < 5


async def test_spans_per_route_and_per_verifier_call_nest(recorded: Any) -> None:
    methods = ThrowawayPlugin([mfa_pin()])
    tracer = recorded.telemetry.tracer

    def traced_app(app: web.Application) -> None:
        """The application traces its own requests, as its OpenTelemetry instrumentation would."""

        @web.middleware
        async def app_span(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/stepup"):
                return await handler(request)
            with tracer.start_as_current_span(f"app {request.path}"):
                return await handler(request)

        app.middlewares.append(app_span)

    async with StepUpStack.start(
        plugins=[methods, recorded.telemetry], protected=PROTECTED, setup_app=traced_app
    ) as stack:
        await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        status, grant = await step_up(stack, "alice", "user:update")
        assert status == 200
        assert await call(stack, "/profile", grant["elevatedAccessToken"]) == 200
        status, _ = await stack.api("alice", "GET", "/challenges/chl_unknown")
        assert status == 404

    [verify_route] = recorded.spans("POST /stepup/verify")
    assert verify_route.attributes["http.route"] == "/stepup/verify"
    assert verify_route.attributes["http.response.status_code"] == 200
    [verifier_call] = recorded.spans("stepup.verifier.verify")
    assert verifier_call.parent is not None and verifier_call.parent.span_id == verify_route.context.span_id
    assert verifier_call.attributes == {"stepup.method": "pin", "stepup.outcome": "success"}
    assert verifier_call.start_time >= verify_route.start_time and verifier_call.end_time <= verify_route.end_time
    assert "stepup.grant_issued" in [event.name for event in verify_route.events]
    [status_route] = recorded.spans("GET /stepup/challenges/{id}")
    assert status_route.attributes["stepup.error.code"] == "challenge_not_found"
    assert status_route.attributes["http.response.status_code"] == 404
    [guard] = recorded.spans("stepup.guard")  # a child of the application's span
    assert guard.attributes == {"stepup.scope": "user:update", "stepup.outcome": "granted"}
    [app_request] = recorded.spans("app /profile")
    assert guard.parent is not None and guard.parent.span_id == app_request.context.span_id
    begins = recorded.spans("stepup.verifier.begin")
    assert len(begins) == 1 and begins[0].parent.span_id == recorded.spans("POST /stepup/challenges")[0].context.span_id


async def test_no_guard_span_without_an_application_span(recorded: Any) -> None:
    """A protected request the application does not trace makes no orphan span; its guard
    histogram still counts it."""
    async with StepUpStack.start(
        plugins=[ThrowawayPlugin([mfa_pin()]), recorded.telemetry], protected=PROTECTED
    ) as stack:
        assert await call(stack, "/profile", None) == 401
    assert recorded.spans("stepup.guard") == []
    assert recorded.value("stepup.guard.duration", scope="user:update") == 1


async def test_lockouts_rate_limits_and_send_failures_are_counted(recorded: Any) -> None:
    class FailingSender:
        name = "broken-relay"

        async def send(self, delivery: CodeDelivery) -> None:
            raise OSError("connection refused")

    class Senders:
        @hookimpl
        def stepup_deliver_code(self, delivery: CodeDelivery, config: Any) -> FailingSender:
            return FailingSender()

    @attrs.frozen
    class SendingPin(PinVerifier):
        async def begin(self, ctx: VerifierContext, attempt: Attempt) -> dict[str, Any]:
            await ctx.deliver_code(
                CodeDelivery("email", EMAIL, "424242", "stepUp", ctx.clock.now() + 60, attempt.principal.user_id)
            )
            return await super().begin(ctx, attempt)

    methods = ThrowawayPlugin(
        [mfa_pin(begin_limits=(RateLimit(1, 60),)), SendingPin(name="mailed", formats=(CredentialFormat.CUSTOM,))]
    )
    methods.app_credentials["alice"] = [app_email("alice", EMAIL)]
    config = {"limits": {"lockout_failures": 3, "max_attempts": 5}}
    async with StepUpStack.start(plugins=[methods, Senders(), recorded.telemetry], config=config) as stack:
        await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        begin = {"method": "pin", "requestedScopes": ["user:update"]}
        status, start = await stack.api("alice", "POST", "/challenges", begin)
        assert status == 201
        status, body = await stack.api("alice", "POST", "/challenges", begin)
        assert status == 429 and body["code"] == "rate_limited"
        for _ in range(3):
            status, body = await stack.api(
                "alice", "POST", "/verify",
                {"method": "pin", "challengeId": start["challengeId"], "response": {"code": WRONG_PIN}},
            )
        answer = {"method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN}}
        status, body = await stack.api("alice", "POST", "/verify", answer)
        assert status == 429 and body["code"] == "locked_out"

        await stack.api("bob", "POST", "/enrollments", {"method": "mailed", "params": {"pin": PIN}})
        begin = {"method": "mailed", "requestedScopes": ["user:update"]}
        status, body = await stack.api("bob", "POST", "/challenges", begin)
        assert status == 502 and body["code"] == "delivery_failed"

    assert recorded.value("stepup.rate_limits", limit="begin") == 1
    assert recorded.value("stepup.lockouts", method="pin") == 1
    assert recorded.value("stepup.verifications", method="pin", outcome="verification_failed") == 3
    assert recorded.value("stepup.code.deliveries", channel="email", sender="broken-relay", outcome="failure") == 1
    # The lockout notice went to alice's address through the console sender.
    assert recorded.value("stepup.notifications", kind="locked_out", channel="email", outcome="success") == 1


async def test_no_attribute_carries_a_secret_a_code_a_token_or_an_address(recorded: Any) -> None:
    """Flows that handle known secrets (a PIN, a wrong PIN, an elevated token, a session token,
    an email address, a redirect's state and provider code, an address typed as a scope); then
    every span name, attribute, event and status, and every metric attribute, is searched."""
    provider_code = "provider-code-5f1e9a77c3"
    methods = ThrowawayPlugin([mfa_pin(), RedirectVerifier(provider_url=None)])
    methods.app_credentials["alice"] = [app_email("alice", EMAIL)]
    secrets_seen: list[str] = [PIN, WRONG_PIN, EMAIL, provider_code, session_token("alice"), session_token("bob")]
    async with StepUpStack.start(plugins=[methods, recorded.telemetry], protected=PROTECTED) as stack:
        await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN, "email": EMAIL}})
        await step_up(stack, "alice", "wallet:export", WRONG_PIN)
        status, grant = await step_up(stack, "alice", "wallet:export")
        token = grant["elevatedAccessToken"]
        secrets_seen.append(token)
        assert await call(stack, "/wallet/export", token) == 200
        assert await call(stack, "/wallet/export", token) == 401
        status, _ = await stack.api("alice", "POST", "/check", {"scope": EMAIL})
        assert status == 422
        status, start = await stack.api("bob", "POST", "/enrollments", {"method": "redirect"})
        state = start["data"]["state"]
        secrets_seen.append(state)
        url = f"{stack.base_url}/stepup/callback/redirect?state={state}&code={provider_code}"
        async with stack.http.get(url, headers={"Accept": "application/json"}) as response:
            assert response.status == 400
            assert provider_code in (await response.text())  # the message names it; telemetry must not
        status, _ = await stack.api("alice", "DELETE", "/grants")
        assert status == 200

    spans = recorded.spans()
    assert {"POST /stepup/verify", "GET /stepup/callback/{method}", "stepup.verifier.verify"} <= {
        s.name for s in spans
    }
    texts: list[str] = []
    for span in spans:
        texts += [span.name, json.dumps(dict(span.attributes or {})), str(span.status.description)]
        for event in span.events:
            texts += [event.name, json.dumps(dict(event.attributes or {}))]
    points = recorded.points()
    assert len(points) > 10
    texts += [json.dumps(p.attributes) for p in points]
    everything = "\n".join(texts)
    assert "wallet:export" in everything and "verification_failed" in everything
    for secret in secrets_seen:
        assert secret not in everything, f"{secret!r} leaked into telemetry"
    assert "sut_" not in everything and "@" not in everything


async def test_prometheus_scrape_endpoint_serves_the_metrics_in_the_text_format() -> None:
    telemetry = StepUpTelemetry()
    methods = ThrowawayPlugin([mfa_pin()])
    config = {"plugins": {"otel": {"prometheus": True, "prometheus_port": 0}}}
    async with StepUpStack.start(plugins=[methods, telemetry], config=config, protected=PROTECTED) as stack:
        url = telemetry.scrape_url
        assert url is not None and url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        await stack.api("alice", "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
        _, grant = await step_up(stack, "alice", "wallet:export")
        assert await call(stack, "/wallet/export", grant["elevatedAccessToken"]) == 200
        async with stack.http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    issued = families["stepup_grants_issued"]
    assert issued.type == "counter"
    [sample] = [s for s in issued.samples if s.name == "stepup_grants_issued_total"]
    assert sample.labels["method"] == "pin" and sample.labels["token"] == "single_use" and sample.value == 1.0
    guard = families["stepup_guard_duration_seconds"]
    assert guard.type == "histogram"
    counts = [s for s in guard.samples if s.name == "stepup_guard_duration_seconds_count"]
    assert [(s.labels["scope"], s.labels["outcome"], s.value) for s in counts] == [("wallet:export", "granted", 1.0)]
    assert "http_server_request_duration_seconds" in families
    # The endpoint closes with the service.
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            await response.read()


async def test_the_scrape_endpoint_is_off_by_default() -> None:
    telemetry = StepUpTelemetry()
    async with StepUpStack.start(plugins=[ThrowawayPlugin([mfa_pin()]), telemetry]):
        assert telemetry.scrape_url is None


async def test_prometheus_with_a_provider_of_ones_own_is_a_configuration_error(recorded: Any) -> None:
    config = {"plugins": {"otel": {"prometheus": True, "prometheus_port": 0}}}
    with pytest.raises(errors.ConfigError, match="PrometheusMetricReader"):
        async with StepUpStack.start(plugins=[recorded.telemetry], config=config):
            pass
    with pytest.raises(errors.ConfigError, match=r"plugins\.otel.*prometheus_port must be between 0 and 65535"):
        bad_port = {"plugins": {"otel": {"prometheus_port": 70000}}}
        async with StepUpStack.start(plugins=[StepUpTelemetry()], config=bad_port):
            pass
