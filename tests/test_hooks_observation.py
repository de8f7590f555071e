"""One test per lifecycle, observation and notice hook, through the host code that calls it
(the meta-test in test_docs.py requires a ``test_hook_<name>`` for every hook)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from aiohttp import web

from stepup_core import errors, hookimpl
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import (
    AuditEvent,
    ChallengeRequest,
    Credential,
    CredentialChange,
    CredentialChangeKind,
    CredentialFormat,
    EnrollmentRequest,
    Factor,
    Message,
    Operation,
    Principal,
    VerifyRequest,
)
from stepup_core.observe import observe
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack
from stepup_core.verifier import Attempt, NewCredential

P = Principal("u", "s")
PIN = "4821"


@pytest.fixture
def pm() -> Any:
    return get_plugin_manager(load_entrypoints=False)


async def make_service(pm: Any, **config: Any) -> StepUpService:
    return await StepUpService.create(
        config_from_mapping({"store": "memory:", "secret_key": "ab" * 32, **config}), pm=pm, clock=ManualClock()
    )


def mfa_pin(**changes: Any) -> PinVerifier:
    return attrs.evolve(PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False), **changes)


async def test_hook_stepup_startup(pm: Any) -> None:
    seen: list[str] = []

    class Worker:
        @hookimpl
        async def stepup_startup(self, service: StepUpService) -> None:
            seen.append(f"start {service.config.app_name} store={await service.store.get('x')}")

        @hookimpl
        def stepup_shutdown(self, service: StepUpService) -> None:
            seen.append("stop")

    pm.register(Worker(), name="worker")
    service = await make_service(pm, app_name="Acme")
    assert seen == ["start Acme store=None"]  # the store is open when startup fires
    await service.close()
    assert seen == ["start Acme store=None", "stop"]

    class Broken:
        @hookimpl(tryfirst=True)
        def stepup_startup(self, service: StepUpService) -> None:
            raise errors.ConfigError("plugins.broken.url: must be https")

    pm.register(Broken(), name="broken")
    seen.clear()
    with pytest.raises(errors.ConfigError, match="must be https"):
        await make_service(pm)
    assert seen == ["stop"]  # a failed start closes the service: what started is stopped


async def test_hook_stepup_shutdown(pm: Any) -> None:
    order: list[str] = []

    class Flusher:
        @hookimpl
        async def stepup_shutdown(self, service: StepUpService) -> None:
            await service.store.put("flushed", "yes")  # the store is still open
            order.append("flushed")

    class Faulty:
        @hookimpl(trylast=True)  # started last, so stopped first
        def stepup_shutdown(self, service: StepUpService) -> None:
            order.append("faulty")
            raise RuntimeError("boom")

    pm.register(Flusher(), name="flusher")
    pm.register(Faulty(), name="faulty")
    service = await make_service(pm)
    await service.close()
    assert order == ["faulty", "flushed"]  # one failing implementation does not stop the others
    with pytest.raises(errors.StoreUnavailable):
        await service.store.get("flushed")  # then the store closed


async def test_hook_stepup_operation(pm: Any) -> None:
    operations: list[Operation] = []

    class Timer:
        @hookimpl
        def stepup_operation(self, operation: Operation) -> None:
            operations.append(operation)

    assert observe(pm, "guard").__enter__()._started == 0.0  # nobody listens: no clock is read
    pm.register(ThrowawayPlugin([mfa_pin()]), name="methods")
    pm.register(Timer(), name="timer")
    service = await make_service(pm)
    await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": PIN}))
    start = await service.begin(P, ChallengeRequest(method="pin", requested_scopes=("user:update",)))
    with pytest.raises(errors.VerificationFailed):
        await service.verify(P, VerifyRequest(method="pin", challenge_id=start.challenge_id, response={"code": "0000"}))
    await service.verify(P, VerifyRequest(method="pin", challenge_id=start.challenge_id, response={"code": PIN}))
    await service.close()
    assert [(o.name, o.outcome, o.attributes) for o in operations] == [
        ("verifier.begin_enrollment", "success", {"method": "pin"}),
        ("verifier.begin", "success", {"method": "pin"}),
        ("verifier.verify", "verification_failed", {"method": "pin"}),
        ("verifier.verify", "success", {"method": "pin"}),
    ]
    assert all(0 <= o.duration < 5 and o.started_at > 1e9 for o in operations)


async def test_guard_and_check_operations_over_http(pm: Any) -> None:
    operations: list[Operation] = []

    class Timer:
        @hookimpl
        def stepup_operation(self, operation: Operation) -> None:
            operations.append(operation)

    async with StepUpStack.start(
        plugins=[ThrowawayPlugin([mfa_pin()]), Timer()], protected={"/profile": "user:update"}
    ) as stack:
        status, _ = await stack.api("alice", "POST", "/check", {"scope": "user:update"})
        assert status == 200
        async with stack.http.post(stack.base_url + "/profile", headers=stack.headers("alice")) as response:
            assert response.status == 401
    assert [(o.name, o.outcome, o.attributes) for o in operations] == [
        ("check", "required", {"scope": "user:update"}),
        ("guard", "insufficient_user_authentication", {"scope": "user:update"}),
    ]


async def test_hook_stepup_server_middlewares(pm: Any) -> None:
    seen: list[tuple[str, str]] = []

    @web.middleware
    async def tag(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except errors.StepUpError as exc:
            seen.append((request.path, exc.code))  # the error, before it becomes problem+json
            raise
        response.headers["X-Observed"] = "yes"
        return response

    class Middlewares:
        @hookimpl
        def stepup_server_middlewares(self, config: Any) -> list[Any]:
            return [tag]

    async with StepUpStack.start(plugins=[ThrowawayPlugin([mfa_pin()]), Middlewares()]) as stack:
        async with stack.http.get(stack.base_url + "/stepup/methods") as response:
            assert response.headers["X-Observed"] == "yes"
        status, body = await stack.api("alice", "GET", "/challenges/chl_nope")
        assert status == 404 and body["code"] == "challenge_not_found"
    assert seen == [("/stepup/challenges/chl_nope", "challenge_not_found")]


@attrs.frozen
class RegeneratingPin(PinVerifier):
    """A PIN whose re-enrolment replaces the earlier one (as recovery codes regenerate)."""

    def _credential(self, attempt: Attempt, digest: str) -> NewCredential:
        return attrs.evolve(super()._credential(attempt, digest), replaces_existing=True)


async def test_hook_stepup_credential_changed(pm: Any) -> None:
    changes: list[CredentialChange] = []

    class Watcher:
        @hookimpl
        def stepup_credential_changed(self, change: CredentialChange, service: StepUpService) -> None:
            changes.append(change)

    pm.register(ThrowawayPlugin([RegeneratingPin(name="pin", factor=Factor.MFA, formats=(CredentialFormat.TOTP,))]),
                name="methods")
    pm.register(Watcher(), name="watcher")
    service = await make_service(pm)
    first = await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": PIN}))
    start = await service.begin(P, ChallengeRequest(method="pin", requested_scopes=("credential:link",
                                                                                    "credential:unlink")))
    grant = await service.verify(P, VerifyRequest(method="pin", challenge_id=start.challenge_id,
                                                  response={"code": PIN}))
    token = grant.elevated_access_token
    second = await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": "9753"}), token)
    assert second.credential is not None and first.credential is not None
    await service.delete_credential(P, second.credential.id, token)
    await service.close()
    assert [(c.kind, c.credential.id, [r.id for r in c.replaced]) for c in changes] == [
        (CredentialChangeKind.LINKED, first.credential.id, []),
        (CredentialChangeKind.RESET, second.credential.id, [first.credential.id]),
        (CredentialChangeKind.UNLINKED, second.credential.id, []),
    ]
    assert all(c.user_id == "u" and c.session_id == "s" for c in changes)
    assert changes[0].credential.data["pinHash"]  # the stored record itself, server side


async def test_hook_stepup_deliver_message(pm: Any) -> None:
    sent: list[Message] = []

    class Pager:
        name = "pager"

        async def send(self, message: Message) -> None:
            sent.append(message)

    class Paging:
        @hookimpl
        def stepup_deliver_message(self, message: Message, config: Any) -> Pager | None:
            return Pager() if message.channel == "sms" else None  # email falls through to the console

    app = ThrowawayPlugin([mfa_pin()])
    app.app_credentials["u"] = [
        Credential(id="phone", user_id="u", method="", format=CredentialFormat.PHONE_NUMBER, factor=Factor.REAUTH,
                   created_at=0.0, identifier="+15550100"),
        Credential(id="mail", user_id="u", method="", format=CredentialFormat.EMAIL, factor=Factor.REAUTH,
                   created_at=0.0, identifier="u@example.test"),
    ]
    pm.register(app, name="app")
    pm.register(Paging(), name="paging")
    service = await make_service(pm, app_name="Acme")
    await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": PIN}))
    await service.close()
    [message] = sent
    assert (message.channel, message.address, message.kind, message.html) == (
        "sms", "+15550100", "credential_linked", None
    )
    assert message.text.startswith("Acme: authenticator app added to your account on ")
    assert sorted((e.details["channel"], e.details["sender"]) for e in app.of_type("notification_sent")) == [
        ("email", "console"), ("sms", "pager"),
    ]


async def test_stepup_event_implementations_may_ask_for_the_service(pm: Any) -> None:
    seen: list[tuple[str, str]] = []

    class WithService:
        @hookimpl
        def stepup_event(self, event: AuditEvent, service: StepUpService) -> None:
            seen.append((event.type, service.config.app_name))

    pm.register(ThrowawayPlugin([mfa_pin()]), name="methods")
    pm.register(WithService(), name="with-service")
    service = await make_service(pm, app_name="Acme")
    await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": PIN}))
    await service.close()
    assert ("credential_enrolled", "Acme") in seen


async def test_refused_tokens_rate_limits_and_failed_sends_are_audit_events(pm: Any) -> None:
    from stepup_core.models import CodeDelivery
    from stepup_core.verifier import RateLimit

    class Broken:
        name = "broken"

        async def send(self, delivery: CodeDelivery) -> None:
            raise OSError("relay down")

    class Senders:
        @hookimpl
        def stepup_deliver_code(self, delivery: CodeDelivery, config: Any) -> Broken:
            return Broken()

    app = ThrowawayPlugin([mfa_pin(begin_limits=(RateLimit(1, 60),))])
    pm.register(app, name="app")
    pm.register(Senders(), name="senders")
    service = await make_service(pm)
    await service.begin_enrollment(P, EnrollmentRequest(method="pin", params={"pin": PIN}))
    start = await service.begin(P, ChallengeRequest(method="pin", requested_scopes=("wallet:export",)))
    with pytest.raises(errors.RateLimited):
        await service.begin(P, ChallengeRequest(method="pin", requested_scopes=("wallet:export",)))
    grant = await service.verify(P, VerifyRequest(method="pin", challenge_id=start.challenge_id,
                                                  response={"code": PIN}))
    assert await service.require_scope(P, "wallet:export", grant.elevated_access_token) is not None
    with pytest.raises(errors.StepUpRequired):
        await service.require_scope(P, "wallet:export", grant.elevated_access_token)  # used up
    with pytest.raises(errors.StepUpRequired):
        await service.require_scope(P, "wallet:export", None)  # no token: the usual first call, no event
    with pytest.raises(errors.DeliveryFailed):
        await service.ctx.deliver_code(CodeDelivery("email", "u@example.test", "123456", "stepUp", 0.0, "u"))
    await service.close()
    [refused] = app.of_type("grant_refused")
    assert (refused.outcome, refused.reason, refused.scopes) == ("failure", "token_not_valid", ("wallet:export",))
    [limited] = app.of_type("rate_limited")
    assert limited.details == {"limit": "begin", "max": 1, "window": 60}
    [failed] = app.of_type("code_delivery_failed")
    assert (failed.reason, failed.details) == ("delivery_failed", {"channel": "email", "sender": "broken"})
    assert "u@example.test" not in repr(failed) and "123456" not in repr(failed)
