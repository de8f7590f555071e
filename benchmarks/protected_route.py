"""Requests per second of a route guarded by ``requires_scope`` (with a time-bound elevated token)
against the same handler unguarded, on the memory, SQLite, Redis and PostgreSQL stores, and on
the memory store with stepup-otel installed and exporting (``memory+otel``: a span per guarded
request and the guard's metrics, both exported by the SDK's batch span processor and periodic
metric reader to console exporters writing to /dev/null, so the encoding work is real).

Each store's server runs in its own process (one event loop, as an application would run it);
this process drives them with concurrent aiohttp clients over loopback. Every round measures
every store and route in turn, the order flipping between rounds, after a warm-up, so a change
in the machine's load falls on all of them alike. Besides requests per second the
table shows the server's CPU time per request (from /proc), which does not depend on how fast
the load generator is, and how busy the server was (near 100 % means the server, not the
client, set the pace).

    python benchmarks/protected_route.py [--seconds 3] [--rounds 4] [--concurrency 20]
                                         [--stores memory,sqlite,redis,postgres,memory+otel]
                                         [--strict]

Targets: protected / unprotected >= 0.9 in memory, >= 0.8 on SQLite, >= 0.7 on Redis and
PostgreSQL, >= 0.85 in memory with stepup-otel (``pip install ./plugins/stepup-otel``; not in the
default ``--stores``). ``--strict`` exits 1 when a target is missed. The Redis and PostgreSQL
rows start their own throwaway servers on loopback (a ``redis-server``; a PostgreSQL cluster by
``initdb`` in a temporary directory) with stepup-redis's and stepup-postgres's test helpers, and
stop them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from aiohttp import ClientSession, TCPConnector, web
from harness import server_directory

from stepup_core.models import Principal

TARGETS = {"memory": 0.9, "sqlite": 0.8, "redis": 0.7, "postgres": 0.7, "memory+otel": 0.85}
STORE_KINDS = tuple(TARGETS)
DEFAULT_STORES = ("memory", "sqlite", "redis", "postgres")
SCOPE = "user:update"
SESSION = "Bearer bench-user:bench-session"


# --- the server (child process) --------------------------------------------------------------------


async def _identify(request: web.Request) -> Principal | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    user, sep, session = value.partition(":")
    if scheme != "Bearer" or not sep:
        return None
    return Principal(user_id=user, session_id=session)


async def _serve(store_kind: str, store_url: str | None) -> None:
    from stepup_core.config import config_from_mapping
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.server import build_app, requires_scope
    from stepup_core.service import StepUpService

    workdir = server_directory()  # removed when this process exits
    if store_url is None:
        store_url = f"sqlite:{Path(workdir) / 'stepup.sqlite3'}" if store_kind == "sqlite" else "memory:"
    config = config_from_mapping({"store": store_url, "secret_key": secrets.token_hex(32)})
    pm = get_plugin_manager(load_entrypoints=False)
    if store_kind in ("redis", "postgres"):
        pm.register(__import__(f"stepup_{store_kind}.plugin", fromlist=["plugin"]), name=store_kind)
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

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port, "token": issued.elevated_access_token}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await service.close()


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


# --- the store servers (this process) ------------------------------------------------------------


@attrs.define
class _Backend:
    stop: Any
    directory: Path | None = None

    def stop_and_remove(self) -> None:
        self.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _store_server(store_kind: str, backends: list[_Backend]) -> str | None:
    """Start the server a shared store needs; its URL (None for memory and SQLite)."""
    if store_kind == "redis":
        from stepup_redis.testing import RedisServer

        directory = Path(tempfile.mkdtemp(prefix="stepup-bench-redis-"))
        redis = RedisServer(directory=directory)
        redis.start()
        backends.append(_Backend(redis.stop, directory))
        return redis.url
    if store_kind == "postgres":
        from stepup_postgres.testing import PostgresCluster

        cluster = PostgresCluster.create()
        backends.append(_Backend(cluster.destroy))
        cluster.start()
        # Over the cluster's unix socket, as an application reaches a database on its own host.
        return f"postgresql://stepup@/postgres?host={cluster.socket_dir}&port={cluster.port}&max_size=20"
    return None


# --- the load (this process) -----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


@attrs.define
class Tally:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    #: Requests per second of each round, in order.
    round_rates: list[float] = attrs.field(factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def server_busy(self) -> float:
        return self.server_cpu / self.seconds if self.seconds else 0.0


async def _load(session: ClientSession, url: str, headers: dict[str, str], seconds: float, concurrency: int) -> Tally:
    deadline = time.perf_counter() + seconds
    tally = Tally()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    tally.requests += 1
                else:
                    tally.failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally


#: The routes every server has, by name: the handler unguarded and guarded.
ROUTE_PATHS = {"unprotected": "open", "protected": "guarded"}


@attrs.define
class Server:
    store_kind: str
    proc: asyncio.subprocess.Process
    base: str
    token: str
    #: The routes measured, by name (a benchmark may add reference routes to the two above).
    paths: Mapping[str, str] = attrs.field(factory=lambda: dict(ROUTE_PATHS))
    totals: dict[str, Tally] = attrs.field()

    @totals.default
    def _totals(self) -> dict[str, Tally]:
        return {route: Tally() for route in self.paths}

    def url(self, route: str) -> str:
        return f"{self.base}/{self.paths[route]}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": SESSION, "X-Elevated-Access-Token": self.token}


async def _start(store_kind: str, store_url: str | None) -> Server:
    extra = ["--store-url", store_url] if store_url else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", store_kind, *extra, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
    except BaseException:
        await _stop(proc)
        raise
    return Server(store_kind, proc, f"http://127.0.0.1:{info['port']}", info["token"])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def _measure(servers: list[Server], args: argparse.Namespace) -> None:
    """Every round visits every (store, route) pair, the order flipping from round to round, so
    drift in the machine's load falls on all of them alike."""
    async with ClientSession(connector=TCPConnector(limit=args.concurrency)) as session:
        for server in servers:
            for route in server.paths:
                warm = await _load(session, server.url(route), server.headers, args.warmup, args.concurrency)
                if warm.failures or not warm.requests:
                    raise SystemExit(f"{server.store_kind} {route}: warm-up failed ({warm.failures} non-200 answers)")
        for round_no in range(args.rounds):
            visits = [(server, route) for server in servers for route in server.paths]
            for server, route in visits if round_no % 2 == 0 else reversed(visits):
                cpu_before = _cpu_seconds(server.proc.pid)
                tally = await _load(session, server.url(route), server.headers, args.seconds, args.concurrency)
                cpu_after = _cpu_seconds(server.proc.pid)
                total = server.totals[route]
                total.requests += tally.requests
                total.failures += tally.failures
                total.seconds += tally.seconds
                total.round_rates.append(tally.rate)
                if cpu_before is not None and cpu_after is not None:
                    total.server_cpu += cpu_after - cpu_before


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
    backends: list[Any] = []
    try:
        for store_kind in stores:
            servers.append(await _start(store_kind, _store_server(store_kind, backends)))
        await _measure(servers, args)
    finally:
        for server in servers:
            await _stop(server.proc)
        for backend in backends:
            backend.stop_and_remove()
    return report(servers, TARGETS, args.strict)


def report(
    servers: list[Server], targets: Mapping[str, float], strict: bool, references: Mapping[str, str] | None = None
) -> int:
    """Print each store's routes and its protected/unprotected verdict; the exit status.

    ``references``: what each route beyond the two measures (its ratio to the unprotected route
    is printed as a reference, not judged)."""
    rows = []
    verdicts = []
    for server in servers:
        store_kind, totals = server.store_kind, server.totals
        for name in server.paths:
            rows.append((store_kind, name, totals[name]))
        ratio = totals["protected"].rate / totals["unprotected"].rate
        target = targets.get(store_kind, 0.0)
        pairs = zip(totals["protected"].round_rates, totals["unprotected"].round_rates, strict=True)
        per_round = [p / u for p, u in pairs if u]
        cpu_ratio = (
            totals["unprotected"].cpu_per_request_us / totals["protected"].cpu_per_request_us
            if totals["protected"].cpu_per_request_us
            else 0.0
        )
        verdicts.append((store_kind, ratio, target, per_round, cpu_ratio))

    header = (
        f"{'store':<11} {'route':<16} {'requests':>9} {'failures':>8} {'req/s':>9} "
        f"{'server cpu/req':>15} {'server busy':>12}"
    )
    print()
    print(header)
    print("-" * len(header))
    for store_kind, name, t in rows:
        print(
            f"{store_kind:<11} {name:<16} {t.requests:>9} {t.failures:>8} {t.rate:>9.0f} "
            f"{t.cpu_per_request_us:>12.0f} us {t.server_busy:>11.0%}"
        )
    print()
    missed = False
    for store_kind, ratio, target, per_round, cpu_ratio in verdicts:
        ok = ratio >= target
        missed |= not ok
        verdict = "met" if ok else "MISSED"
        print(f"{store_kind:<11} protected/unprotected = {ratio:.3f}  (target >= {target:.2f}: {verdict})")
        print(f"{'':<11}   by round: {', '.join(f'{r:.2f}' for r in per_round)}")
        print(
            f"{'':<11}   server cpu per request, unprotected/protected = {cpu_ratio:.3f} (a saturated server's ratio)"
        )
        for server in servers:
            if server.store_kind != store_kind:
                continue
            for name, meaning in (references or {}).items():
                if name in server.totals and server.totals["unprotected"].rate:
                    reference = server.totals[name].rate / server.totals["unprotected"].rate
                    print(f"{'':<11}   reference: {name}/unprotected = {reference:.3f} ({meaning})")
    failures = sum(t.failures for _, _, t in rows)
    if failures:
        print(f"{failures} requests did not answer 200")
        return 1
    return 1 if (missed and strict) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per route per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--stores", default=",".join(DEFAULT_STORES))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", choices=STORE_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.store_url))
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
