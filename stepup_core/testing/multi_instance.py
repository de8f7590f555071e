"""Two stepup server processes on loopback sharing one store server: the multi-instance suite.

A shared store backend (Redis, PostgreSQL, a third party's) subclasses
:class:`MultiInstanceSuite` and provides two fixtures returning :class:`StoreServer` objects::

    class TestMultiInstance(MultiInstanceSuite):
        store_plugin = "redis"                     # the entry-point name the instances load

        @pytest.fixture(scope="class")
        @classmethod
        def store_server(cls, ...) -> StoreServer:
            ...                                    # one running server for the class's tests

        @pytest.fixture
        def own_store_server(self, ...) -> StoreServer:
            ...                                    # a running server of the test's own whose
                                                   # data survives stop() and start()

Each test drives both instances over HTTP as an application's users would: what one instance
grants, counts or consumes, the other sees at once; when the store server stops, both fail
closed (checks say "required", protected routes answer 503) and both recover when it is back.
The methods are the real ``totp`` and ``recovery`` plugins (stepup-totp, stepup-recovery); the
suite skips when they are not installed. Each test uses its own user.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import aiohttp
import attrs
import pytest

__all__ = [
    "Answer",
    "Cluster",
    "Instance",
    "MultiInstanceSuite",
    "StoreServer",
    "User",
    "start_cluster",
    "write_config",
]

USERS = ("shared", "revoke", "single", "payer", "recovery", "totp", "order", "lockout", "outage", "late")
PERIOD = 30


class StoreServer(Protocol):
    """A store server the suite can share, stop and start again (on the same address)."""

    def store_url(self, namespace: str) -> str:
        """The store URL of a namespace of its own (a key prefix, a schema) on this server."""
        ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


@attrs.define
class Instance:
    """One ``python -m stepup_core.testing.instance_server`` process."""

    name: str
    config: Path
    log_path: Path
    plugins: str
    process: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "STEPUP_LOAD_PLUGINS": self.plugins}
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stepup_core.testing.instance_server", str(self.config), self.name],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith("LISTENING "):
                    self.url = f"http://127.0.0.1:{int(line.split()[1])}"
                    return
            if self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"stepup instance {self.name} did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        if process.stdout is not None:
            process.stdout.close()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def unexpected_errors(self) -> str:
        """Log lines of requests that failed unexpectedly (answered 500 or crashed a handler)."""
        markers = ("unexpected error on", "Error handling request")
        return "\n".join(line for line in self.log_text().splitlines() if any(m in line for m in markers))


@attrs.define
class Cluster:
    server: StoreServer
    instances: list[Instance]
    tokens: dict[str, str]  # user -> bearer token of the application's session

    @property
    def a(self) -> Instance:
        return self.instances[0]

    @property
    def b(self) -> Instance:
        return self.instances[1]

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()


def write_config(path: Path, store_url: str, tokens: dict[str, str]) -> None:
    """A ``stepup.toml`` for the instances: the store, one secret key, generous attempt budgets,
    a lockout after 12 failures, development tokens for the users, 20 recovery codes."""
    lines = [
        f'store = "{store_url}"',
        f'secret_key = "{secrets.token_hex(32)}"',
        'app_name = "multi-instance"',
        "",
        "[limits]",
        "max_attempts = 100",
        "lockout_failures = 12",
        "lockout_window = 900",
        "",
        "[identify]",
        'mode = "tokens"',
        "",
        "[plugins.recovery]",
        "count = 20",
        "warn_below = 0",
    ]
    for user, token in tokens.items():
        lines += ["", f'[identify.tokens."{token}"]', f'user_id = "{user}"', f'session_id = "{user}-session"']
    path.write_text("\n".join(lines) + "\n")


def start_cluster(directory: Path, server: StoreServer, namespace: str, store_plugin: str) -> Cluster:
    """Instances A and B with one configuration on ``server``'s ``namespace``."""
    tokens = {user: f"session-{user}-{secrets.token_hex(12)}" for user in USERS}
    config = directory / "stepup.toml"
    write_config(config, server.store_url(namespace), tokens)
    plugins = f"{store_plugin},totp,recovery"
    instances = [Instance(name, config, directory / f"{name}.log", plugins) for name in ("A", "B")]
    try:
        for instance in instances:
            instance.start()
    except BaseException:
        for instance in instances:
            instance.stop()
        raise
    return Cluster(server, instances, tokens)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def _current_step() -> int:
    return int(time.time() // PERIOD)


async def _away_from_step_boundary() -> None:
    """Wait while the current TOTP step has under 5 s left, so a test's codes stay in one step."""
    left = PERIOD - time.time() % PERIOD
    if left < 5:
        await asyncio.sleep(left + 0.2)


@attrs.define
class User:
    """One application user talking to both instances."""

    http: aiohttp.ClientSession
    cluster: Cluster
    name: str

    async def call(
        self,
        instance: Instance,
        method: str,
        path: str,
        body: Any = None,
        elevated: str | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {self.cluster.tokens[self.name]}"}
        if elevated:
            headers["X-Elevated-Access-Token"] = elevated
        async with self.http.request(method, instance.url + path, json=body, headers=headers) as response:
            content_type = response.headers.get("Content-Type", "")
            parsed = await response.json(content_type=None) if "json" in content_type else await response.text()
            answer = Answer(response.status, parsed, dict(response.headers))
        assert answer.status != 500, f"{method} {path} on {instance.name} answered 500: {answer.body}"
        return answer

    async def enrol_totp(self, instance: Instance) -> tuple[Any, int]:
        """Enrol an authenticator app confirmed with the previous step's code; returns the app
        (a ``pyotp.TOTP``) and the step it was enrolled in (steps after it are usable)."""
        import pyotp

        await _away_from_step_boundary()
        start = await self.call(instance, "POST", "/stepup/enrollments", {"method": "totp"})
        assert start.status == 201, start.body
        app = pyotp.TOTP(start.body["data"]["secret"])
        step = _current_step() - 1
        done = await self.call(
            instance,
            "POST",
            f"/stepup/enrollments/{start.body['enrollmentId']}",
            {"response": {"code": app.at(step * PERIOD)}},
        )
        assert done.status == 200, done.body
        return app, step

    async def verify(self, instance: Instance, method: str, code: str, scopes: list[str]) -> Answer:
        return await self.call(
            instance,
            "POST",
            "/stepup/verify",
            {"method": method, "response": {"code": code}, "requestedScopes": scopes},
        )

    async def enrol_recovery(self, a: Instance, b: Instance) -> list[str]:
        """TOTP on ``a``, a ``credential:link`` token from ``a``, recovery codes enrolled on ``b``."""
        app, step = await self.enrol_totp(a)
        link = await self.verify(a, "totp", app.at((step + 1) * PERIOD), ["credential:link"])
        assert link.status == 200, link.body
        codes = await self.call(
            b, "POST", "/stepup/enrollments", {"method": "recovery"}, elevated=link.body["elevatedAccessToken"]
        )
        assert codes.status == 201, codes.body
        return list(codes.body["data"]["codes"])


# --------------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------------


@pytest.mark.asyncio
class MultiInstanceSuite:
    """Two instances on one store server. Subclasses set :attr:`store_plugin` and provide the
    ``store_server`` (class-scoped) and ``own_store_server`` fixtures (see the module docstring)."""

    #: The store plugin's entry-point name; the instances load it with totp and recovery.
    store_plugin: ClassVar[str] = ""

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _methods_installed(cls) -> None:
        pytest.importorskip("stepup_totp", reason="the multi-instance tests use stepup-totp")
        pytest.importorskip("stepup_recovery", reason="the multi-instance tests use stepup-recovery")

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls, store_server: StoreServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
        """Instances A and B on the class's store server, in a namespace of their own."""
        running = start_cluster(
            tmp_path_factory.mktemp("cluster"), store_server, f"cluster_{secrets.token_hex(4)}", cls.store_plugin
        )
        try:
            yield running
        finally:
            running.stop()
        for instance in running.instances:
            assert not instance.unexpected_errors(), f"instance {instance.name}: {instance.unexpected_errors()}"

    @pytest.fixture
    def outage_cluster(self, tmp_path: Path, own_store_server: StoreServer) -> Iterator[Cluster]:
        """Instances A and B on a store server of their own, which the test stops and starts."""
        running = start_cluster(tmp_path, own_store_server, "outage", self.store_plugin)
        try:
            yield running
        finally:
            running.stop()

    @pytest.fixture
    async def http(self) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession() as session:
            yield session

    # ----------------------------------------------------------------------------------------
    # sharing
    # ----------------------------------------------------------------------------------------

    async def test_a_token_minted_on_one_instance_validates_on_the_other(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "shared")
        codes = await user.enrol_recovery(cluster.a, cluster.b)

        refused = await user.call(cluster.b, "GET", "/app/profile")
        assert refused.status == 401
        assert 'error="insufficient_user_authentication"' in refused.headers["WWW-Authenticate"]

        minted = await user.verify(cluster.a, "recovery", codes[0], ["user:update"])
        assert minted.status == 200, minted.body
        token = minted.body["elevatedAccessToken"]
        assert minted.body["singleUse"] is False

        for instance in (cluster.b, cluster.a, cluster.b):
            allowed = await user.call(instance, "GET", "/app/profile", elevated=token)
            assert allowed.status == 200, allowed.body
            assert allowed.body == {"instance": instance.name, "action": "profile"}
        check = await user.call(cluster.b, "POST", "/stepup/check", {"scope": "user:update"}, elevated=token)
        assert check.status == 200
        assert check.body["isRequired"] is False
        # The credentials enrolled on A and on B are one list, on either instance.
        listed_a = await user.call(cluster.a, "GET", "/stepup/credentials")
        listed_b = await user.call(cluster.b, "GET", "/stepup/credentials")
        assert sorted(c["format"] for c in listed_a.body) == ["recoveryCode", "totp"]
        assert listed_a.body == listed_b.body

    async def test_grants_revoked_on_one_instance_are_refused_by_the_other(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "revoke")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        minted = await user.verify(cluster.b, "recovery", codes[0], ["user:update"])
        token = minted.body["elevatedAccessToken"]
        assert (await user.call(cluster.a, "GET", "/app/profile", elevated=token)).status == 200

        revoked = await user.call(cluster.b, "DELETE", "/stepup/grants")
        assert revoked.status == 200
        assert revoked.body["revoked"] >= 1
        after = await user.call(cluster.a, "GET", "/app/profile", elevated=token)
        assert after.status == 401
        assert after.code == "insufficient_user_authentication"

    async def test_one_single_use_token_presented_to_both_at_once_succeeds_once(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "single")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        for round_number in range(3):
            minted = await user.verify(cluster.a, "recovery", codes[round_number], ["wallet:export"])
            assert minted.status == 200, minted.body
            assert minted.body["singleUse"] is True
            token = minted.body["elevatedAccessToken"]
            answers = await asyncio.gather(
                *(
                    user.call(cluster.a if i % 2 else cluster.b, "POST", "/app/export", elevated=token)
                    for i in range(20)
                )
            )
            statuses = sorted(a.status for a in answers)
            assert statuses == [200] + [401] * 19, statuses
            assert all(a.code == "insufficient_user_authentication" for a in answers if a.status == 401)

    async def test_a_bound_token_pays_once_on_either_instance_and_other_details_use_nothing(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "payer")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        payment = {"amount": "120.00", "payee": "ACME Ltd"}
        minted = await user.call(
            cluster.a,
            "POST",
            "/stepup/verify",
            {
                "method": "recovery",
                "response": {"code": codes[0]},
                "requestedScopes": ["wallet:sign"],
                "transaction": payment,
            },
        )
        assert minted.status == 200 and minted.body["singleUse"] is True, minted.body
        token = minted.body["elevatedAccessToken"]
        other = {"amount": "9999.00", "payee": "ACME Ltd"}
        either = [cluster.a, cluster.b]
        refused = await asyncio.gather(
            *(user.call(either[i % 2], "POST", "/app/pay", other, elevated=token) for i in range(10))
        )
        assert [(a.status, a.code) for a in refused] == [(403, "transaction_mismatch")] * 10
        answers = await asyncio.gather(
            *(user.call(either[i % 2], "POST", "/app/pay", payment, elevated=token) for i in range(20))
        )
        statuses = sorted(a.status for a in answers)
        assert statuses == [200] + [401] * 19, statuses
        assert next(a for a in answers if a.status == 200).body["paid"] == payment

    async def test_one_recovery_code_submitted_to_both_at_once_grants_once(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "recovery")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        answers = await asyncio.gather(
            *(user.verify(cluster.a if i % 2 else cluster.b, "recovery", codes[0], ["user:update"]) for i in range(10))
        )
        granted = [a for a in answers if a.status == 200]
        assert len(granted) == 1, [(a.status, a.code) for a in answers]
        assert {a.code for a in answers if a.status != 200} == {"verification_failed"}
        # The code is gone for both instances; the next one still works.
        again = await user.verify(cluster.b, "recovery", codes[0], ["user:update"])
        assert again.status == 400
        assert (await user.verify(cluster.a, "recovery", codes[1], ["user:update"])).status == 200

    async def test_a_totp_code_used_on_one_instance_is_refused_on_the_other(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        user = User(http, cluster, "totp")
        app, step = await user.enrol_totp(cluster.a)

        # One code sent to both instances at once: one grant.
        code = app.at((step + 1) * PERIOD)
        answers = await asyncio.gather(
            *(user.verify(cluster.a if i % 2 else cluster.b, "totp", code, ["user:update"]) for i in range(10))
        )
        assert sorted(a.status for a in answers) == [200] + [400] * 9
        assert {a.code for a in answers if a.status == 400} == {"replay_detected"}

        # A code accepted by A, replayed on B.
        code = app.at((step + 2) * PERIOD)
        first = await user.verify(cluster.a, "totp", code, ["user:update"])
        assert first.status == 200, first.body
        replay = await user.verify(cluster.b, "totp", code, ["user:update"])
        assert replay.status == 400
        assert replay.code == "replay_detected"
        assert "elevatedAccessToken" not in replay.body

    async def test_after_a_newer_totp_step_neither_instance_accepts_an_older_one(
        self, cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        """RFC 6238 section 5.2 across processes: the device's last accepted step lives in the
        shared store."""
        user = User(http, cluster, "order")
        app, step = await user.enrol_totp(cluster.a)
        current = step + 1
        # A phone whose clock runs ahead shows the next step's code first; A accepts it.
        ahead = await user.verify(cluster.a, "totp", app.at((current + 1) * PERIOD), ["user:update"])
        assert ahead.status == 200, ahead.body
        # The current step's code, never used, is older than that: B refuses it and says why.
        older = await user.verify(cluster.b, "totp", app.at(current * PERIOD), ["user:update"])
        assert older.status == 400 and older.code == "replay_detected", older.body
        assert "older than the last code accepted" in older.body["detail"]
        # Both codes sent to both instances at once: nothing more is accepted.
        answers = await asyncio.gather(
            *(
                user.verify(
                    cluster.a if i % 2 else cluster.b, "totp", app.at((current + i % 4 // 2) * PERIOD), ["user:update"]
                )
                for i in range(8)
            )
        )
        assert [a.status for a in answers] == [400] * 8, [(a.status, a.code) for a in answers]
        assert {a.code for a in answers} == {"replay_detected"}

    async def test_lockout_counts_are_shared(self, cluster: Cluster, http: aiohttp.ClientSession) -> None:
        from stepup_recovery.codes import generate_codes

        user = User(http, cluster, "lockout")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        wrong = generate_codes(12)
        # Twelve failures in all (the configured lockout), six on each instance: neither instance
        # alone has seen enough to lock the user out.
        for i, guess in enumerate(wrong):
            answer = await user.verify(cluster.a if i % 2 else cluster.b, "recovery", guess, ["user:update"])
            assert answer.status == 400, answer.body
            assert answer.code == "verification_failed"
        for instance in (cluster.a, cluster.b):
            locked = await user.verify(instance, "recovery", codes[0], ["user:update"])
            assert locked.status == 429, locked.body
            assert locked.code == "locked_out"
        # The refused attempts did not use up the code: it is still there once the lockout ends.
        listed = await user.call(cluster.a, "GET", "/stepup/credentials")
        recovery = next(c for c in listed.body if c["format"] == "recoveryCode")
        assert recovery["details"]["remaining"] == 20

    # ----------------------------------------------------------------------------------------
    # outage
    # ----------------------------------------------------------------------------------------

    async def test_a_store_outage_fails_closed_and_both_instances_recover(
        self, outage_cluster: Cluster, http: aiohttp.ClientSession
    ) -> None:
        cluster = outage_cluster
        user = User(http, cluster, "outage")
        codes = await user.enrol_recovery(cluster.a, cluster.b)
        minted = await user.verify(cluster.a, "recovery", codes[0], ["user:update"])
        token = minted.body["elevatedAccessToken"]
        single = await user.verify(cluster.b, "recovery", codes[1], ["wallet:export"])
        single_token = single.body["elevatedAccessToken"]
        assert (await user.call(cluster.b, "GET", "/app/profile", elevated=token)).status == 200

        await asyncio.to_thread(cluster.server.stop)
        for instance in cluster.instances:
            check = await user.call(instance, "POST", "/stepup/check", {"scope": "user:update"}, elevated=token)
            assert check.status == 200
            assert check.body["isRequired"] is True

            for method, path, body, elevated in (
                ("GET", "/app/profile", None, token),
                ("POST", "/app/export", None, single_token),
                (
                    "POST",
                    "/stepup/verify",
                    {"method": "recovery", "response": {"code": codes[2]}, "requestedScopes": ["user:update"]},
                    None,
                ),
                ("GET", "/stepup/credentials", None, None),
                ("POST", "/stepup/enrollments", {"method": "totp"}, token),
            ):
                answer = await user.call(instance, method, path, body, elevated=elevated)
                assert answer.status == 503, (instance.name, path, answer.status, answer.body)
                assert answer.headers["Content-Type"].startswith("application/problem+json")
                assert answer.code == "store_unavailable"
                assert "elevatedAccessToken" not in answer.body

        await asyncio.to_thread(cluster.server.start)  # same address, the data kept
        for instance in cluster.instances:
            check = await user.call(instance, "POST", "/stepup/check", {"scope": "user:update"}, elevated=token)
            assert check.status == 200
            assert check.body["isRequired"] is False
            assert (await user.call(instance, "GET", "/app/profile", elevated=token)).status == 200
        # The single-use token refused during the outage was not consumed by the refusal.
        assert (await user.call(cluster.a, "POST", "/app/export", elevated=single_token)).status == 200
        assert (await user.call(cluster.b, "POST", "/app/export", elevated=single_token)).status == 401
        # And the code submitted during the outage is still unused.
        assert (await user.verify(cluster.b, "recovery", codes[2], ["user:update"])).status == 200
        for instance in cluster.instances:
            assert not instance.unexpected_errors(), f"instance {instance.name}: {instance.unexpected_errors()}"

    async def test_instances_started_while_the_store_is_down_serve_once_it_is_up(
        self, tmp_path: Path, own_store_server: StoreServer, http: aiohttp.ClientSession
    ) -> None:
        await asyncio.to_thread(own_store_server.stop)
        cluster = start_cluster(tmp_path, own_store_server, "late", self.store_plugin)
        try:
            user = User(http, cluster, "late")
            for instance in cluster.instances:
                # The start-up warning names the problem.
                assert "answers 'store unavailable'" in instance.log_text()
                check = await user.call(instance, "POST", "/stepup/check", {"scope": "user:update"})
                assert check.status == 200
                assert check.body["isRequired"] is True
                guarded = await user.call(instance, "GET", "/app/profile")
                assert guarded.status == 503
                assert guarded.code == "store_unavailable"

            await asyncio.to_thread(own_store_server.start)
            codes = await user.enrol_recovery(cluster.a, cluster.b)
            minted = await user.verify(cluster.b, "recovery", codes[0], ["user:update"])
            assert minted.status == 200, minted.body
            allowed = await user.call(cluster.a, "GET", "/app/profile", elevated=minted.body["elevatedAccessToken"])
            assert allowed.status == 200
            for instance in cluster.instances:
                assert not instance.unexpected_errors(), f"instance {instance.name}: {instance.unexpected_errors()}"
        finally:
            cluster.stop()
