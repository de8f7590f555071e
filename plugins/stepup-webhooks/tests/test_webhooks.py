"""Webhooks to a real receiver on loopback: signatures checked by an independent implementation
(the ``standardwebhooks`` package), an outage, a crash mid-delivery, retries and their limits."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import standardwebhooks
import stepup_webhooks.plugin
from stepup_webhooks.outbox import Record
from stepup_webhooks.plugin import dispatcher_of
from stepup_webhooks.settings import WebhookSettings
from stepup_webhooks.signing import new_secret, secret_key, sign

from stepup_core import errors
from stepup_core.models import CredentialFormat, Factor
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack, session_token

from .conftest import Receiver, webhooks_config

PIN = "2468013579"
HERE = Path(__file__).resolve().parent


def methods() -> ThrowawayPlugin:
    return ThrowawayPlugin([PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False)])


async def enrol(stack: StepUpStack, user: str = "alice") -> None:
    status, body = await stack.api(user, "POST", "/enrollments", {"method": "pin", "params": {"pin": PIN}})
    assert status == 201, body


async def step_up(stack: StepUpStack, scope: str = "user:update", pin: str = PIN) -> tuple[int, Any]:
    status, start = await stack.api("alice", "POST", "/challenges", {"method": "pin", "requestedScopes": [scope]})
    assert status == 201, start
    return await stack.api(
        "alice", "POST", "/verify", {"method": "pin", "challengeId": start["challengeId"], "response": {"code": pin}}
    )


async def test_every_event_is_signed_as_standard_webhooks_says(receiver: Receiver) -> None:
    secret = new_secret()
    plugin = methods()
    config = webhooks_config(receiver.url, secret, endpoint={"events": ["*"]})
    async with StepUpStack.start(
        plugins=[plugin, stepup_webhooks.plugin], config=config, protected={"/profile": "user:update"}
    ) as stack:
        await enrol(stack)
        await step_up(stack, pin="0000")
        status, grant = await step_up(stack)
        assert status == 200
        async with stack.http.post(
            stack.base_url + "/profile", headers=stack.headers("alice", grant["elevatedAccessToken"])
        ) as response:
            assert response.status == 200
        expected = plugin.types()
        await receiver.wait_for(len(expected))

    verifier = standardwebhooks.Webhook(secret)
    received = []
    for delivery in receiver.accepted:
        body = verifier.verify(delivery.body, delivery.headers)  # raises on a bad signature
        assert body["data"]["type"] == body["type"]
        assert body["timestamp"].endswith("Z")
        received.append(body["type"])
    assert collections.Counter(received) == collections.Counter(expected)
    assert {"credential_enrolled", "verification_failed", "grant_issued", "grant_used"} <= set(received)

    delivery = receiver.accepted[0]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(delivery.body, delivery.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(delivery.body.replace('"alice"', '"mallory"'), delivery.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(delivery.body, {**delivery.headers, "webhook-id": "msg_other"})


def test_signature_matches_the_specification_vector() -> None:
    """The example of the Standard Webhooks specification, signed by our code."""
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = '{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


async def test_receiver_down_then_up_every_event_arrives_once(receiver: Receiver) -> None:
    await receiver.down()  # the port stays ours: nothing answers on it
    secret = new_secret()
    config = webhooks_config(receiver.url, secret, endpoint={"events": ["credential_*", "grant_issued"]})
    async with StepUpStack.start(plugins=[methods(), stepup_webhooks.plugin], config=config) as stack:
        dispatcher = dispatcher_of(stack.service)
        assert dispatcher is not None
        await enrol(stack)
        for _ in range(14):
            status, _body = await step_up(stack)
            assert status == 200
        events = 15
        await asyncio.sleep(1.0)  # attempts fail and back off while the receiver is down
        assert receiver.arrived == []
        failed_while_down = dispatcher.stats.failed_attempts
        assert failed_while_down >= events
        assert len(await dispatcher.pending()) == events

        await receiver.up()
        await receiver.wait_for(events)
        await asyncio.sleep(0.5)  # time for a duplicate to show up, were there one
        assert await dispatcher.pending() == []

    ids = [d.id for d in receiver.accepted]
    types = collections.Counter(json.loads(d.body)["type"] for d in receiver.accepted)
    print(
        f"\nwebhook outage: {events} events queued while the receiver was down, {failed_while_down} failed "
        f"attempts while down, {len(receiver.arrived)} requests after it came up, {len(set(ids))} distinct ids, "
        f"{len(ids) - len(set(ids))} duplicates; types {dict(types)}"
    )
    assert len(ids) == len(set(ids)) == events
    assert types == {"credential_enrolled": 1, "grant_issued": 14}


async def _start_server(store: Path, settings: dict[str, Any]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "webhook_server.py"), str(store), json.dumps(settings),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    return proc, json.loads(line)["url"]


async def test_a_server_killed_mid_delivery_loses_nothing(receiver: Receiver, tmp_path: Path) -> None:
    secret = new_secret()
    endpoint = {"events": ["credential_*", "grant_issued"], "timeout": 5}
    settings = webhooks_config(receiver.url, secret, endpoint=endpoint)
    store = tmp_path / "stepup.sqlite3"
    receiver.hold = True  # every delivery stays in flight
    proc, url = await _start_server(store, settings)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {session_token('alice')}"}

            async def api(path: str, body: Any) -> Any:
                async with http.post(f"{url}/stepup{path}", json=body, headers=headers) as response:
                    assert response.status in (200, 201), await response.text()
                    return await response.json()

            await api("/enrollments", {"method": "pin", "params": {"pin": PIN}})
            for _ in range(5):
                start = await api("/challenges", {"method": "pin", "requestedScopes": ["user:update"]})
                await api("/verify", {"method": "pin", "challengeId": start["challengeId"], "response": {"code": PIN}})
        events = 6
        deadline = asyncio.get_running_loop().time() + 10
        while len(receiver.arrived) < events:
            assert asyncio.get_running_loop().time() < deadline, "deliveries did not start"
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-delivery: every request is open, none answered
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    in_flight_at_kill = len(receiver.arrived)
    assert receiver.accepted == []

    receiver.hold = False
    await receiver.down()
    await receiver.up()
    proc, _url = await _start_server(store, settings)  # the same SQLite file: the outbox survived
    try:
        await receiver.wait_for(events, timeout=30)
        await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    ids = [d.id for d in receiver.accepted]
    print(
        f"\nwebhook crash: {events} events, {in_flight_at_kill} deliveries in flight when the server was killed, "
        f"none answered; after the restart {len(ids)} accepted, {len(set(ids))} distinct ids, "
        f"{len(ids) - len(set(ids))} duplicates"
    )
    assert len(set(ids)) == events
    assert {d.id for d in receiver.arrived[:in_flight_at_kill]} == set(ids)


async def test_failing_endpoint_is_retried_with_backoff_then_given_up(receiver: Receiver) -> None:
    receiver.status = 500
    plugin = methods()
    config = webhooks_config(receiver.url, new_secret(), max_attempts=3, endpoint={"events": ["credential_*"]})
    async with StepUpStack.start(plugins=[plugin, stepup_webhooks.plugin], config=config) as stack:
        dispatcher = dispatcher_of(stack.service)
        assert dispatcher is not None
        await enrol(stack)
        for _ in range(200):
            if await dispatcher.dead():
                break
            await asyncio.sleep(0.02)
        [dead] = await dispatcher.dead()
        assert await dispatcher.pending() == []
    assert dead.attempts == 3 and dead.last_error == "HTTP 500" and dead.type == "credential_enrolled"
    assert [d.id for d in receiver.arrived] == [dead.id] * 3  # one id across retries
    times = [int(d.headers["webhook-timestamp"]) for d in receiver.arrived]
    assert times == sorted(times)
    [abandoned] = plugin.of_type("webhook_abandoned")
    assert abandoned.details == {"endpoint": dead.endpoint, "messageId": dead.id, "eventType": "credential_enrolled"}


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status = 307
    config = webhooks_config(receiver.url, new_secret(), max_attempts=1, endpoint={"events": ["*"]})
    async with StepUpStack.start(plugins=[methods(), stepup_webhooks.plugin], config=config) as stack:
        dispatcher = dispatcher_of(stack.service)
        assert dispatcher is not None
        await enrol(stack)
        for _ in range(200):
            if await dispatcher.dead():
                break
            await asyncio.sleep(0.02)
        assert [r.last_error for r in await dispatcher.dead()] == ["HTTP 307"]


async def test_only_the_events_an_endpoint_asks_for_are_sent(receiver: Receiver) -> None:
    other = Receiver()
    await other.up()
    try:
        config = webhooks_config(receiver.url, new_secret())  # the default set: no grant_used
        config["plugins"]["webhooks"]["endpoints"].append(
            {"url": other.url, "secret": new_secret(), "events": ["locked_out"], "name": "alerts"}
        )
        async with StepUpStack.start(
            plugins=[methods(), stepup_webhooks.plugin], config=config, protected={"/profile": "user:update"}
        ) as stack:
            await enrol(stack)
            status, grant = await step_up(stack)
            assert status == 200
            async with stack.http.post(
                stack.base_url + "/profile", headers=stack.headers("alice", grant["elevatedAccessToken"])
            ) as response:
                assert response.status == 200
            await receiver.wait_for(2)
            await asyncio.sleep(0.3)
    finally:
        await other.down()
    assert sorted(json.loads(d.body)["type"] for d in receiver.accepted) == ["credential_enrolled", "grant_issued"]
    assert other.arrived == []


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"url": "http://hooks.example.com/x"}, "http is accepted only for a loopback receiver"),
        ({"url": "ftp://hooks.example.com/x"}, "must be an https:// URL"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "must not carry a user name or password"),
        ({"secret": "plain-secret"}, "starts with 'whsec_'"),
        ({"secret": "whsec_c2hvcnQ="}, "24 to 64 random bytes"),
        ({"events": []}, "at least one event type"),
    ],
)
async def test_bad_endpoint_settings_fail_the_start(endpoint: dict[str, Any], message: str) -> None:
    settings = {"url": "https://hooks.example.com/stepup", "secret": new_secret(), **endpoint}
    config = {"plugins": {"webhooks": {"endpoints": [settings]}}}
    with pytest.raises(errors.ConfigError, match=message):
        async with StepUpStack.start(plugins=[stepup_webhooks.plugin], config=config):
            pass


def test_loopback_http_and_https_are_accepted_and_backoff_doubles() -> None:
    from stepup_webhooks.settings import load_settings

    from stepup_core.config import config_from_mapping

    endpoints = [
        {"url": url, "secret": new_secret(), "name": f"e{i}"}
        for i, url in enumerate(["https://hooks.example.com/x", "http://127.0.0.1:9/x", "http://[::1]:9/x",
                                 "http://localhost/x"])
    ]
    settings = load_settings(config_from_mapping({"plugins": {"webhooks": {"endpoints": endpoints}}}))
    assert len(settings.endpoints) == 4
    schedule = attrs.evolve(WebhookSettings(), backoff_base=5.0, backoff_max=3600.0)
    assert [schedule.backoff(n) for n in range(1, 12)] == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert schedule.backoff(10_000) == 3600


def test_records_round_trip() -> None:
    record = Record("msg_1", "e", "grant_issued", "{}", created=1.0, due=2.0, attempts=3, lease=4.0, last_error="x")
    assert Record.loads(record.dumps()) == record
