"""``stepup demo``: every installed method, end to end, in one process.

The demo starts a stepup server on loopback with a SQLite store in a temporary directory, and
an application with two protected routes:

- ``POST /demo/wallet/export`` needs ``wallet:export`` (a single-use token);
- ``POST /demo/profile`` needs ``user:update`` (a time-bound token).

It creates two users: ``alice`` gets the MFA methods (passkey, authenticator app, recovery
codes) and ``bob`` the re-authentication methods (email or SMS code, wallet), since a user with
MFA cannot step up by re-authenticating. Each method that can run with no one at the keyboard
(its client half offers an unattended actor: an authenticator app, a software security key, a
local wallet key, a mailbox) is enrolled through the HTTP API, then used for a real step-up
with :class:`~stepup_core.client.StepUpClient`; the token is presented to a protected route, and
a single-use token is presented a second time to show that it is refused.

The server runs on a clock of its own that actors keeping time (an authenticator app) share:
it moves half a minute forward before each step-up, as a person would take a moment, so a TOTP
code is never one the server has already seen and an email code is never refused as a resend.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import attrs

from .cli_text import text_table
from .client import ELEVATED_TOKEN_HEADER, ScriptedPrompter, StepUpClient
from .client.method import ClientMethod
from .client.registry import client_methods, package_for
from .clock import SystemClock
from .config import config_from_mapping
from .errors import StepUpError
from .hookspecs import hookimpl
from .install import BUILT_FOLDER, install_command
from .models import AuditEvent, Factor, Interaction, MethodInfo, Principal

SINGLE_USE_SCOPE = "wallet:export"
TIME_BOUND_SCOPE = "user:update"
SINGLE_USE_ROUTE = "/demo/wallet/export"
TIME_BOUND_ROUTE = "/demo/profile"
#: How far the demo clock moves before each step-up ("a moment later").
MOMENT = 31.0
#: The methods that ship with stepup, each in its own distribution ``stepup-<method>``.
FIRST_PARTY_METHODS = ("otp", "totp", "passkey", "wallet", "recovery", "social")
ALL_PACKAGES = tuple(f"stepup-{method}" for method in FIRST_PARTY_METHODS)
#: What each user's identity looks like to methods that link an address.
ENROL_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "alice": {"email": "alice@example.test", "user_name": "alice", "display_name": "Alice", "account_name": "alice"},
    "bob": {"email": "bob@example.test", "user_name": "bob", "display_name": "Bob", "account_name": "bob"},
}


@attrs.define
class DemoClock:
    """The system clock plus an offset the demo moves forward."""

    offset: float = 0.0
    base: SystemClock = attrs.field(factory=SystemClock)

    def now(self) -> float:
        return self.base.now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@attrs.define
class Row:
    method: str
    user: str
    route: str
    token: str
    result: str
    ms: float | None = None
    ok: bool | None = True  # None: skipped


@attrs.define(eq=False)
class AuditCounter:
    """Counts the audit events the server emits during the demo."""

    events: list[AuditEvent] = attrs.field(factory=list)

    @hookimpl
    def stepup_event(self, event: AuditEvent) -> None:
        self.events.append(event)


def _has_hookimpls(obj: Any) -> bool:
    return any(name.startswith("stepup_") and hasattr(getattr(obj, name, None), "stepup_impl") for name in dir(obj))


def _table(rows: list[Row]) -> str:
    headers = ("METHOD", "USER", "PROTECTED ROUTE", "TOKEN", "RESULT", "MS")
    cells = [(r.method, r.user, r.route, r.token, r.result, "" if r.ms is None else f"{r.ms:.0f}") for r in rows]
    return "\n".join(text_table(headers, cells))


def _core_only_message() -> str:
    return (
        "Only stepup-core is installed: there is no verification method to demonstrate.\n"
        "Install the methods (or any of them) from the root of a stepup checkout, then run\n"
        "`stepup demo` again:\n\n"
        f"    {install_command(*ALL_PACKAGES)}\n\n"
        f"or, with the distributions `nox -s build` wrote to {BUILT_FOLDER}/:\n\n"
        f"    pip install --find-links {BUILT_FOLDER} {' '.join(ALL_PACKAGES)}\n\n"
        "(they are not on PyPI; docs/installing.md has the details)"
    )


def _skip_reason(info: MethodInfo, half: ClientMethod | None, actor: Any, actor_error: str | None) -> str | None:
    if half is None:
        return f"client half not installed ({install_command(package_for(info.name))})"
    if actor_error is not None:
        return f"no unattended stand-in: {actor_error}"
    if actor is None:
        if info.interaction is Interaction.REDIRECT:
            return "needs an outside party: a configured sign-in provider and a person at a browser"
        return "needs a person to answer it"
    return None


async def run_demo(out: TextIO, *, pm: Any = None) -> int:
    """Run the demo, writing to ``out``; the exit status (0 only if every step that ran passed)."""
    from aiohttp import web

    from .plugins import get_plugin_manager
    from .server import build_app, requires_scope, serve_app
    from .server.identify import StaticTokenIdentify
    from .service import StepUpService

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    pm = pm or get_plugin_manager()
    halves = client_methods(pm)
    clock = DemoClock()
    actors, actor_errors, registered = _actors(halves, clock, pm)
    audit = AuditCounter()
    pm.register(audit, name="stepup-demo-audit")
    registered.append("stepup-demo-audit")
    audit_log = logging.getLogger("stepup.audit")
    previous_level = audit_log.level
    audit_log.setLevel(logging.ERROR)  # refusals are expected here; the table reports them
    try:
        with tempfile.TemporaryDirectory(prefix="stepup-demo-") as tmp:
            config = config_from_mapping(
                {
                    "store": f"sqlite:{tmp}/demo.sqlite3",
                    "secret_key": secrets.token_hex(32),
                    "app_name": "stepup demo",
                    # Codes go to the demo's stand-ins (or, with none, the console), knowingly.
                    "allow_console_delivery": True,
                }
            )
            service = await StepUpService.create(config, pm=pm, clock=clock)
            try:
                infos = {m.name: m for m in service.methods()}
                if not infos:
                    say(_core_only_message())
                    return 0
                sessions = {
                    "alice": ("alice-" + secrets.token_urlsafe(18), Principal("alice", "demo-session-alice")),
                    "bob": ("bob-" + secrets.token_urlsafe(18), Principal("bob", "demo-session-bob")),
                }
                identify = StaticTokenIdentify.from_mapping({t: p for t, p in sessions.values()})
                app = build_app(service, identify)

                @requires_scope(SINGLE_USE_SCOPE)
                async def export_key(request: web.Request) -> web.Response:
                    return web.json_response({"exported": True})

                @requires_scope(TIME_BOUND_SCOPE)
                async def update_profile(request: web.Request) -> web.Response:
                    return web.json_response({"updated": True})

                app.router.add_post(SINGLE_USE_ROUTE, export_key)
                app.router.add_post(TIME_BOUND_ROUTE, update_profile)
                async with serve_app(app) as base_url:
                    # The demo knows its own address: redirect callbacks use it, and no warning
                    # about an unset server.public_url is printed.
                    service.public_url = base_url
                    say(f"stepup demo: server on {base_url} (SQLite store in a temporary directory)")
                    say("methods installed: " + ", ".join(f"{n} ({infos[n].factor.value})" for n in sorted(infos)))
                    missing = [f"stepup-{m}" for m in FIRST_PARTY_METHODS if m not in infos]
                    if missing:
                        say(f"not installed: {', '.join(missing)} ({install_command(*missing)} adds them)")
                    rows = await _run(base_url, sessions, infos, halves, actors, actor_errors, clock, pm, say)
            finally:
                await service.close()
    finally:
        audit_log.setLevel(previous_level)
        for name in registered:
            pm.unregister(name=name)
    return _summary(rows, audit, say)


def _actors(
    halves: Mapping[str, ClientMethod], clock: DemoClock, pm: Any
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The unattended stand-ins by method, the errors of those that could not be made, and the
    plugin names of the stand-ins registered on ``pm`` (a mailbox that receives the codes)."""
    actors: dict[str, Any] = {}
    actor_errors: dict[str, str] = {}
    registered: list[str] = []
    for name, half in sorted(halves.items()):
        try:
            actor = half.unattended()
        except Exception as exc:  # noqa: BLE001 - a broken stand-in skips its method, it does not stop the demo
            actor_errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if actor is None:
            continue
        if hasattr(actor, "clock"):
            with contextlib.suppress(AttributeError):
                actor.clock = clock
        actors[name] = actor
        if _has_hookimpls(actor):
            plugin_name = f"stepup-demo-{name}-actor"
            pm.register(actor, name=plugin_name)
            registered.append(plugin_name)
    return actors, actor_errors, registered


def _summary(rows: list[Row], audit: AuditCounter, say: Callable[..., None]) -> int:
    say()
    say(_table(rows))
    ran = [r for r in rows if r.ok is not None]
    failed = [r for r in ran if not r.ok]
    skipped = len(rows) - len(ran)
    say()
    say(
        f"{len(ran) - len(failed)} passed, {len(failed)} failed"
        + (f", {skipped} skipped" if skipped else "")
        + f"; {len(audit.events)} audit events"
    )
    if not ran:
        say(
            "No method could run unattended; install one that can: "
            + install_command("stepup-totp", "stepup-passkey", "stepup-wallet")
        )
        return 0
    return 1 if failed else 0


def _order(infos: list[MethodInfo]) -> list[MethodInfo]:
    # Primary methods before fallbacks (recovery codes back up another MFA method), and among
    # them the ones without a code first.
    return sorted(infos, key=lambda m: (m.fallback, m.interaction is Interaction.CODE, m.name))


async def _run(
    base_url: str,
    sessions: Mapping[str, tuple[str, Principal]],
    infos: Mapping[str, MethodInfo],
    halves: Mapping[str, ClientMethod],
    actors: Mapping[str, Any],
    actor_errors: Mapping[str, str],
    clock: DemoClock,
    pm: Any,
    say: Callable[[str], None],
) -> list[Row]:
    rows: list[Row] = []
    plan = _plan(infos, halves, actors, actor_errors, rows)
    for user, methods in plan.items():
        if not methods:
            continue
        token, _principal = sessions[user]
        async with StepUpClient(
            base_url, token, prompter=ScriptedPrompter(), pm=pm, clock=clock, actors=dict(actors)
        ) as client:
            enrolled = await _enrol_all(client, user, methods, clock, rows, say)
            check = await client.check_step_up_auth(SINGLE_USE_SCOPE)
            if client.state.error is not None:
                say(f"{user}: the check failed: {client.state.error}")
                client.reset_state()
            else:
                say(f"{user}: step-up required for {SINGLE_USE_SCOPE}: {check.is_required}, route {check.route.value}")
            who = f"{user} ({check.route.value})"
            for name, credential_id in enrolled.items():
                rows.append(await _single_use_row(client, name, who, credential_id, clock))
                rows.append(await _time_bound_row(client, name, who, credential_id, clock))
    return [r for r in rows if r.ok is not None] + [r for r in rows if r.ok is None]


def _plan(
    infos: Mapping[str, MethodInfo],
    halves: Mapping[str, ClientMethod],
    actors: Mapping[str, Any],
    actor_errors: Mapping[str, str],
    rows: list[Row],
) -> dict[str, list[MethodInfo]]:
    """Which user runs which method (MFA methods alice, the others bob); a row for each skipped one."""
    plan: dict[str, list[MethodInfo]] = {"alice": [], "bob": []}
    for info in _order(list(infos.values())):
        reason = _skip_reason(info, halves.get(info.name), actors.get(info.name), actor_errors.get(info.name))
        if reason is None and info.fallback and not any(not m.fallback for m in plan["alice"]):
            reason = (
                "backs up another MFA method, and none can run here "
                f"(install one: {install_command('stepup-totp')} or {install_command('stepup-passkey')})"
            )
        if reason is not None:
            rows.append(Row(info.name, "-", "-", "-", f"skipped: {reason}", ok=None))
            continue
        plan["alice" if info.factor is Factor.MFA else "bob"].append(info)
    return plan


async def _enrol_all(
    client: StepUpClient,
    user: str,
    methods: list[MethodInfo],
    clock: DemoClock,
    rows: list[Row],
    say: Callable[[str], None],
) -> dict[str, str]:
    """Enrol each method for ``user`` (a second one with a ``credential:link`` token from the
    first); the enrolled credential ids by method, a failure row for each that failed."""
    enrolled: dict[str, str] = {}
    for info in methods:
        started = time.perf_counter()
        try:
            if enrolled and not client.jar.has_valid("credential:link"):
                first = next(iter(enrolled))
                clock.advance(MOMENT)
                await client.step_up(first, requested_scopes=["credential:link"], credential_id=enrolled[first])
            view = await client.enroll(info.name, alias=f"demo {info.name}", **ENROL_OPTIONS[user])
        except (StepUpError, LookupError, TypeError, ValueError) as exc:
            rows.append(Row(info.name, user, "-", "-", f"FAILED to enrol: {type(exc).__name__}: {exc}", ok=False))
            continue
        enrolled[info.name] = view.id
        say(f"enrolled {info.name} for {user} ({view.alias or view.format.value}) in {_ms(started):.0f} ms")
    return enrolled


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _single_use_row(client: StepUpClient, method: str, user: str, credential_id: str, clock: DemoClock) -> Row:
    route = f"POST {SINGLE_USE_ROUTE}"
    clock.advance(MOMENT)
    started = time.perf_counter()
    try:
        issued = await client.step_up(method, requested_scopes=[SINGLE_USE_SCOPE], credential_id=credential_id)
        first = await client.post(SINGLE_USE_ROUTE, scope=SINGLE_USE_SCOPE)
        again = await client.post(SINGLE_USE_ROUTE, headers={ELEVATED_TOKEN_HEADER: issued.elevated_access_token})
    except (StepUpError, LookupError, TypeError, ValueError) as exc:
        return Row(method, user, route, "single-use", f"FAILED: {type(exc).__name__}: {exc}", _ms(started), False)
    elapsed = _ms(started)
    refused = again.step_up_challenge() is not None
    ok = issued.single_use and first.status == 200 and refused and client.jar.peek(SINGLE_USE_SCOPE) is None
    result = f"{first.status}, reused: {again.status}" + (" refused" if refused else " NOT REFUSED")
    return Row(method, user, route, "single-use", ("ok: " if ok else "FAILED: ") + result, elapsed, ok)


async def _time_bound_row(client: StepUpClient, method: str, user: str, credential_id: str, clock: DemoClock) -> Row:
    route = f"POST {TIME_BOUND_ROUTE}"
    clock.advance(MOMENT)
    client.jar.clear()  # step up afresh with this method
    started = time.perf_counter()
    try:
        issued = await client.step_up(method, requested_scopes=[TIME_BOUND_SCOPE], credential_id=credential_id)
        first = await client.post(TIME_BOUND_ROUTE, scope=TIME_BOUND_SCOPE)
        again = await client.post(TIME_BOUND_ROUTE, scope=TIME_BOUND_SCOPE)
    except (StepUpError, LookupError, TypeError, ValueError) as exc:
        return Row(method, user, route, "time-bound", f"FAILED: {type(exc).__name__}: {exc}", _ms(started), False)
    elapsed = _ms(started)
    ok = not issued.single_use and first.status == 200 and again.status == 200
    ttl = issued.expires_at - clock.now()
    result = f"{first.status}, again: {again.status} (valid {ttl / 60:.0f} min)"
    return Row(method, user, route, "time-bound", ("ok: " if ok else "FAILED: ") + result, elapsed, ok)
