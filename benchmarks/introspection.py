"""What asking the sidecar costs: the round trip of ``POST /stepup/introspect`` (a service
credential, a token to look up, a single-use one spent) against a bare HTTP round trip to the
same server (``POST /echo`` with a body of the same size, answering a small JSON object).

The server (stepup's aiohttp application on SQLite, as ``stepup serve`` runs it) is a process of
its own; this process sends requests one after another over one kept-alive connection, as an
application's guard does, and reports the latency of each kind of call, alternating the kinds
so that the machine's load falls on all alike.

    python benchmarks/introspection.py [--requests 2000] [--rounds 4]

The ratio introspection / bare says what the sidecar adds to a protected request beyond the
network hop an application pays anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web
from harness import server_directory

from stepup_core.models import Principal

CREDENTIAL = "sis_benchmark-service-credential-000000000000000"
USER, SESSION = "bench-user", "bench-session"


async def _serve(count: int) -> None:
    from stepup_core.config import config_from_mapping
    from stepup_core.introspection import credential_hash
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.server import build_app
    from stepup_core.service import StepUpService

    workdir = server_directory()  # removed when this process exits
    config = config_from_mapping({
        "store": f"sqlite:{Path(workdir) / 'stepup.sqlite3'}",
        "secret_key": secrets.token_hex(32),
        "introspection": {"clients": {"bench": credential_hash(CREDENTIAL)}},
    })
    service = await StepUpService.create(config, pm=get_plugin_manager(load_entrypoints=False))

    async def nobody(request: web.Request) -> Principal | None:
        return None

    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = build_app(service, nobody)
    app.router.add_post("/echo", echo)
    principal = Principal(USER, SESSION)
    bound = await service.tokens.mint(principal, ["user:update"], method="bench", ttl=3600, single_use=False)
    single = [
        (await service.tokens.mint(principal, ["wallet:export"], method="bench", ttl=3600, single_use=True))
        .elevated_access_token
        for _ in range(count)
    ]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port, "bound": bound.elevated_access_token, "single": single}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await service.close()


def _body(token: str, scope: str) -> dict[str, object]:
    return {"token": token, "scope": scope, "sub": USER, "sid": SESSION, "consume": True}


async def _round(session: ClientSession, base: str, kind: str, tokens: list[str], bound: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {CREDENTIAL}"}
    times: list[float] = []
    for _ in range(n):
        if kind == "bare":
            url, body = f"{base}/echo", _body(bound, "user:update")
        elif kind == "time-bound":
            url, body = f"{base}/stepup/introspect", _body(bound, "user:update")
        else:
            url, body = f"{base}/stepup/introspect", _body(tokens.pop(), "wallet:export")
        started = time.perf_counter()
        async with session.post(url, json=body, headers=headers) as resp:
            answer = await resp.json()
        times.append(time.perf_counter() - started)
        if resp.status != 200 or (kind != "bare" and answer.get("allow") is not True):
            raise SystemExit(f"{kind}: unexpected answer {resp.status} {answer}")
    return times


async def _main(args: argparse.Namespace) -> int:
    per_round = args.requests // args.rounds
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(per_round * args.rounds + args.warmup),
        stdout=asyncio.subprocess.PIPE, limit=2**26,
    )
    assert proc.stdout is not None
    try:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=120))
        base, bound, single = f"http://127.0.0.1:{info['port']}", info["bound"], list(info["single"])
        kinds = ["bare", "time-bound", "single-use"]
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        print(
            f"introspection round trip vs bare HTTP round trip: {args.rounds} rounds x {per_round} sequential "
            f"requests per kind, one kept-alive connection; python {sys.version.split()[0]}, {os.cpu_count()} cpus"
        )
        async with ClientSession(connector=TCPConnector(limit=1)) as session:
            for kind in kinds:
                await _round(session, base, kind, single, bound, args.warmup // len(kinds) or 1)
            for round_no in range(args.rounds):
                for kind in kinds if round_no % 2 == 0 else reversed(kinds):
                    samples[kind] += await _round(session, base, kind, single, bound, per_round)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    print()
    header = f"{'call':<31} {'requests':>8} {'median':>9} {'p95':>9} {'mean':>9}"
    print(header)
    print("-" * len(header))
    medians = {}
    for kind in kinds:
        values = sorted(samples[kind])
        medians[kind] = statistics.median(values)
        p95 = values[int(len(values) * 0.95) - 1]
        label = {"bare": "bare POST /echo", "time-bound": "introspect (time-bound)",
                 "single-use": "introspect (single-use, spent)"}[kind]
        print(f"{label:<31} {len(values):>8} {medians[kind] * 1e6:>6.0f} us {p95 * 1e6:>6.0f} us "
              f"{statistics.fmean(values) * 1e6:>6.0f} us")
    print()
    for kind in ("time-bound", "single-use"):
        print(f"introspection ({kind}) / bare round trip = {medians[kind] / medians['bare']:.2f} "
              f"(+{(medians[kind] - medians['bare']) * 1e6:.0f} us at the median)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per kind in all")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
