"""Requests per second of a route guarded by ``requires_scope`` (with a time-bound elevated token)
against the same handler unguarded, on the memory and SQLite stores, and on the memory store with
stepup-otel installed and exporting (``memory+otel``: a span per guarded request and the guard's
metrics, both exported by the SDK's batch span processor and periodic metric reader to console
exporters writing to /dev/null, so the encoding work is real).

Each store's server runs in its own process (one event loop, as an application would run it);
this process drives them with concurrent aiohttp clients over loopback. Every round measures
every store and route in turn, the order flipping between rounds, after a warm-up, so a change
in the machine's load falls on all of them alike. Besides requests per second the
table shows the server's CPU time per request (from /proc), which does not depend on how fast
the load generator is, and how busy the server was (near 100 % means the server, not the
client, set the pace). The machinery is :mod:`harness`, shared with ``verify.py``.

    python benchmarks/protected_route.py [--seconds 3] [--rounds 4] [--concurrency 20]
                                         [--stores memory,sqlite,memory+otel] [--strict]

Targets: protected / unprotected >= 0.9 in memory, >= 0.8 on SQLite, >= 0.85 in memory with
stepup-otel (``pip install ./plugins/stepup-otel``). ``--strict`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

from aiohttp import ClientSession, web
from harness import Case, Server, cpu_ratio, measure, print_table, serve_until_terminated, start, stop

from stepup_core.models import Principal

TARGETS = {"memory": 0.9, "sqlite": 0.8, "memory+otel": 0.85}
STORE_KINDS = tuple(TARGETS)
SCOPE = "user:update"
SESSION = "Bearer bench-user:bench-session"


# --- the server (child process) --------------------------------------------------------------------


async def _identify(request: web.Request) -> Principal | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    user, sep, session = value.partition(":")
    if scheme != "Bearer" or not sep:
        return None
    return Principal(user_id=user, session_id=session)


async def _serve(store_kind: str) -> None:
    from stepup_core.config import config_from_mapping
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.server import build_app, requires_scope
    from stepup_core.service import StepUpService

    workdir = tempfile.mkdtemp(prefix="stepup-bench-")
    store_url = f"sqlite:{Path(workdir) / 'stepup.sqlite3'}" if store_kind == "sqlite" else "memory:"
    config = config_from_mapping({"store": store_url, "secret_key": secrets.token_hex(32)})
    pm = get_plugin_manager(load_entrypoints=False)
    if store_kind == "memory+otel":
        pm.register(_exporting_telemetry(), name="otel")
    service = await StepUpService.create(config, pm=pm)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = build_app(service, _identify)
    app.router.add_get("/open", handler)
    app.router.add_get("/guarded", requires_scope(SCOPE)(handler))

    # A real time-bound elevated token for the benchmark's user and session, as /verify mints it.
    user, _, session = SESSION.removeprefix("Bearer ").partition(":")
    issued = await service.tokens.mint(
        Principal(user_id=user, session_id=session), [SCOPE], method="benchmark", ttl=3600, single_use=False
    )
    await serve_until_terminated(
        web.AppRunner(app, access_log=None), info={"token": issued.elevated_access_token}, cleanup=service.close
    )


def _exporting_telemetry() -> object:
    """stepup-otel on SDK providers that export: spans through a batch processor, metrics through
    a periodic reader, both to console exporters writing to /dev/null."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from stepup_otel.telemetry import StepUpTelemetry

    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server process
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sink)))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=sink), export_interval_millis=1000)
    return StepUpTelemetry(meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracer_provider)


# --- the load (this process) -----------------------------------------------------------------------


def _get(url: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    async def request(session: ClientSession) -> bool:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    return request


def _cases(server: Server) -> list[Case]:
    headers = {"Authorization": SESSION, "X-Elevated-Access-Token": server.info["token"]}
    return [
        Case(server, "unprotected", _get(f"{server.base}/open", headers)),
        Case(server, "protected", _get(f"{server.base}/guarded", headers)),
    ]


async def _main(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - set(STORE_KINDS))
    if unknown:
        raise SystemExit(f"unknown --stores {', '.join(unknown)}; choose from {', '.join(STORE_KINDS)}")
    print(
        f"protected route benchmark: {args.concurrency} concurrent connections, {args.rounds} rounds x "
        f"{args.seconds:g} s per store and route (alternating order), {args.warmup:g} s warm-up; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    servers: list[Server] = []
    cases: list[Case] = []
    try:
        for store_kind in stores:
            server = await start(store_kind, __file__, store_kind)
            servers.append(server)
            cases.extend(_cases(server))
        await measure(cases, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                      concurrency=args.concurrency)
    finally:
        for server in servers:
            await stop(server.proc)
    print()
    print_table(cases)
    print()
    missed = False
    for i in range(0, len(cases), 2):
        unprotected, protected = cases[i], cases[i + 1]
        store_kind = unprotected.server.name
        ratio = protected.total.rate / unprotected.total.rate if unprotected.total.rate else 0.0
        target = TARGETS.get(store_kind, 0.0)
        pairs = zip(protected.total.round_rates, unprotected.total.round_rates, strict=True)
        per_round = [p / u for p, u in pairs if u]
        cpu, cpu_rounds = cpu_ratio(protected, unprotected)
        ok = ratio >= target
        missed |= not ok
        verdict = "met" if ok else "MISSED"
        print(f"{store_kind:<11} protected/unprotected = {ratio:.3f}  (target >= {target:.2f}: {verdict})")
        print(f"{'':<11}   by round: {', '.join(f'{r:.2f}' for r in per_round)}")
        print(
            f"{'':<11}   server cpu per request, protected/unprotected = {cpu:.3f} "
            f"(by round: {', '.join(f'{r:.2f}' for r in cpu_rounds)})"
        )
    failures = sum(c.total.failures for c in cases)
    if failures:
        print(f"{failures} requests did not answer 200")
        return 1
    return 1 if (missed and args.strict) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per route per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", choices=STORE_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
