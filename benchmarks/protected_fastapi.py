"""Requests per second of a FastAPI route guarded by ``Depends(RequireScope(...))`` (with a
time-bound elevated token) against the same route unguarded, on the SQLite and memory stores.

Each store's application runs under uvicorn in its own process (one event loop, as it would run
in production); this process drives it with concurrent aiohttp clients over loopback, with the
rounds, warm-up, alternating order and server CPU accounting of ``protected_route.py`` (whose
load generator this script reuses).

    python benchmarks/protected_fastapi.py [--seconds 3] [--rounds 4] [--concurrency 20]
                                           [--stores sqlite,memory] [--strict]

Target: protected / unprotected >= 0.85 on SQLite (and on memory). ``--strict`` exits 1 when a
target is missed. Two reference routes are measured beside them (not judged): the same kind of
dependency doing nothing, and a floor guard that only reads the store once (``REFERENCES``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from fastapi import Request
from fastapi.security import APIKeyHeader
from harness import server_directory
from protected_route import ROUTE_PATHS, SCOPE, SESSION, Server, _measure, _stop, report  # the shared load generator

from stepup_core.crypto import token_hash
from stepup_core.models import Principal
from stepup_core.server.http import TOKEN_HEADER

AUDIT_LOG = logging.getLogger("stepup.audit")

TARGETS = {"sqlite": 0.85, "memory": 0.85}
STORE_KINDS = tuple(TARGETS)


async def _identify(request: Any) -> Principal | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    user, sep, session = value.partition(":")
    if scheme != "Bearer" or not sep:
        return None
    return Principal(user_id=user, session_id=session)


#: Reference routes: what FastAPI charges for a dependency of RequireScope's kind that does
#: nothing, and the least a guard reading the store once can do. Their ratios to the unprotected
#: route are printed beside the verdict, so a missed target can be told from a slow guard.
REFERENCE_PATHS = {"dependency": "noop-dependency", "floor": "floor-guard"}
REFERENCES = {
    "dependency": "a dependency of the same kind doing nothing: FastAPI's own cost",
    "floor": "identify, hash the token, read the store once, compare the user: any guard's least",
}


class NoopDependency(APIKeyHeader):
    """A dependency like ``RequireScope`` (an API-key header scheme taking the request)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class FloorGuard(NoopDependency):
    """What no guard that keeps its guarantees can skip: identify the caller, hash the token, read
    its record from the store (once), compare the user, ask whether the audit log listens. No
    policy, no parsing, no audit event, no grant."""

    def __init__(self, store: Any) -> None:
        super().__init__(name=TOKEN_HEADER, auto_error=False)
        self.store = store

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        principal = await _identify(request)
        token = request.headers.get(TOKEN_HEADER, "")
        raw = await self.store.get("grant:" + token_hash(token))
        if principal is None or raw is None or principal.user_id not in raw:
            raise RuntimeError("the floor guard found no grant")
        if AUDIT_LOG.isEnabledFor(logging.INFO):
            AUDIT_LOG.info(json.dumps({"type": "grant_used", "user": principal.user_id}))
        return str(raw)


async def _serve(store_kind: str) -> None:
    import uvicorn
    from fastapi import Depends, FastAPI
    from stepup_fastapi import Elevation, RequireScope, StepUp

    from stepup_core.config import config_from_mapping
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.service import StepUpService

    workdir = server_directory()  # removed when this process exits
    store_url = "memory:" if store_kind == "memory" else f"sqlite:{Path(workdir) / 'stepup.sqlite3'}"
    config = config_from_mapping({"store": store_url, "secret_key": secrets.token_hex(32)})
    service = await StepUpService.create(config, pm=get_plugin_manager(load_entrypoints=False))

    app = FastAPI()
    StepUp(_identify, service=service).install(app)

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"ok": True}

    require = Depends(RequireScope(SCOPE))

    @app.get("/guarded")
    async def guarded(elevation: Elevation = require) -> dict[str, bool]:
        return {"ok": True}

    @app.get(f"/{REFERENCE_PATHS['dependency']}")
    async def with_dependency(
        nothing: None = Depends(NoopDependency(name=TOKEN_HEADER, auto_error=False)),
    ) -> dict[str, bool]:
        return {"ok": True}

    @app.get(f"/{REFERENCE_PATHS['floor']}")
    async def behind_floor(raw: str = Depends(FloorGuard(service.store))) -> dict[str, bool]:
        return {"ok": True}

    user, _, session = SESSION.removeprefix("Bearer ").partition(":")
    issued = await service.tokens.mint(
        Principal(user_id=user, session_id=session), [SCOPE], method="benchmark", ttl=3600, single_use=False
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server._serve())  # signals are handled below
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "token": issued.elevated_access_token}), flush=True)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.should_exit = True
    await task
    await service.close()


async def _start(store_kind: str) -> Server:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", store_kind, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
    except BaseException:
        await _stop(proc)
        raise
    paths = {**ROUTE_PATHS, **REFERENCE_PATHS}
    return Server(store_kind, proc, f"http://127.0.0.1:{info['port']}", info["token"], paths=paths)


async def _main(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - set(STORE_KINDS))
    if unknown:
        raise SystemExit(f"unknown --stores {', '.join(unknown)}; choose from {', '.join(STORE_KINDS)}")
    print(
        f"protected FastAPI route benchmark (uvicorn): {args.concurrency} concurrent connections, "
        f"{args.rounds} rounds x {args.seconds:g} s per store and route (alternating order), "
        f"{args.warmup:g} s warm-up; python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    servers: list[Server] = []
    try:
        for store_kind in stores:
            servers.append(await _start(store_kind))
        await _measure(servers, args)
    finally:
        for server in servers:
            await _stop(server.proc)
    return report(servers, TARGETS, args.strict, REFERENCES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per route per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--stores", default="sqlite,memory")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", choices=STORE_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
