"""Server CPU per request of stepup's hot paths against their floors, on every store.

Three comparisons, each the server's CPU time per request (from /proc, every thread) of the
stepup route over its floor, a route in the same server that does only what cannot be avoided:

``totp-verify / bare-totp``
    ``POST /stepup/verify`` of a TOTP code (a fresh code each time: every user's device is used
    once per time step) against a bare JSON POST that checks the same kind of code with
    ``pyotp`` (``TOTP.verify`` with one step of drift, as stepup allows).
``check / bare-post``
    ``POST /stepup/check`` for a user with an authenticator app against a bare JSON POST.
``protected / unprotected``
    a handler behind ``requires_scope`` (time-bound token) against the same handler unguarded.
``floor-guard / unprotected`` (a reference, not judged)
    the same handler behind the least a guard that reads the store once does (identify, hash
    the token, one store read, compare the user; no policy, parsing or audit event): where the
    protected route's target lies against what reading the store costs at all.

Stores: memory, SQLite, Redis and PostgreSQL (``--stores``; Redis is a throwaway ``redis-server``
and PostgreSQL a throwaway cluster by ``initdb``, both on loopback, both stopped afterwards).
Each store's server runs in its own process with every installed plugin loaded but stepup-otel,
whose spans and metrics cost what ``protected_route.py`` measures on its own (``--with-otel``
loads it too); Redis is a ``redis-server`` started for the run on loopback (its own CPU is not
counted). Every round
measures every store and case in turn, the order flipping between rounds (:mod:`harness`, shared
with ``protected_route.py``); the table shows the CPU per request of each round, and each ratio
is shown overall and per round.

    python benchmarks/verify.py [--stores memory,sqlite,redis,postgres] [--seconds 3] [--rounds 4]
                                [--concurrency 20] [--users 30000] [--with-otel] [--strict]

Targets (ratios of server CPU per request): totp-verify/bare-totp <= 3 memory, <= 8 SQLite and
PostgreSQL, <= 5 Redis; check/bare-post <= 2 memory and SQLite, <= 2.5 Redis and PostgreSQL;
protected/unprotected <= 1.2 memory and SQLite, <= 1.8 Redis and PostgreSQL. ``--strict`` exits
1 when one is missed. The expiry benchmark is ``expiry.py`` beside this file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from harness import Case, Server, cpu_ratio, measure, print_table, serve_until_terminated, start, stop

SCOPE = "user:update"
PERIOD = 30
#: Store kinds this benchmark knows, with the store URL each server is given.
KINDS = ("memory", "sqlite", "redis", "postgres")
TARGETS: dict[str, dict[str, float]] = {
    "totp-verify/bare-totp": {"memory": 3.0, "sqlite": 8.0, "redis": 5.0, "postgres": 8.0},
    "check/bare-post": {"memory": 2.0, "sqlite": 2.0, "redis": 2.5, "postgres": 2.5},
    "protected/unprotected": {"memory": 1.2, "sqlite": 1.2, "redis": 1.8, "postgres": 1.8},
    "floor-guard/unprotected": {},  # a reference: the least any guard reading the store once costs
}
COMPARISONS = (
    ("totp-verify/bare-totp", "totp-verify", "bare-totp"),
    ("check/bare-post", "check", "bare-post"),
    ("protected/unprotected", "protected", "unprotected"),
    ("floor-guard/unprotected", "floor-guard", "unprotected"),
)


def user_secret(seed: str, index: int) -> str:
    """The base32 TOTP secret of benchmark user ``index`` (160 bits), known to both processes."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()[:20]
    return base64.b32encode(digest).decode("ascii")


def user_id(index: int) -> str:
    return f"bench-user-{index}"


# --- the server (child process) --------------------------------------------------------------------


def _principal_from(request: web.Request) -> Any:
    from stepup_core.models import Principal

    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    user, sep, session = value.partition(":")
    if scheme != "Bearer" or not sep:
        return None
    return Principal(user_id=user, session_id=session)


async def _identify(request: web.Request) -> Any:
    return _principal_from(request)


def _floor_guard(store: Any, handler: Any) -> Any:
    """``handler`` behind what no guard that keeps its guarantees can skip: identify the caller,
    hash the token, read its record from the store (once), compare the user, ask whether the
    audit log listens. No policy, no parsing, no audit event, no grant: the reference the
    protected route's cost is shown against (``floor-guard/unprotected``, not judged)."""
    from stepup_core.crypto import token_hash

    audit = logging.getLogger("stepup.audit")

    async def floor_guarded(request: web.Request) -> Any:
        principal = _principal_from(request)
        raw = await store.get("grant:" + token_hash(request.headers.get("X-Elevated-Access-Token", "")))
        if principal is None or raw is None or principal.user_id not in raw:
            return web.json_response({"ok": False}, status=401)
        if audit.isEnabledFor(logging.INFO):
            audit.info(json.dumps({"type": "grant_used", "user": principal.user_id}))
        return await handler(request)

    return floor_guarded


async def _seed(service: Any, kind: str, store_url: str, seed: str, users: int) -> None:
    """Give every benchmark user an authenticator app, as an enrolment would have stored it."""
    from stepup_core.credentials import StoreCredentialRepository
    from stepup_core.models import Credential, CredentialFormat, Factor

    writes: list[tuple[str, str, tuple[str, ...]]] = []

    class Capture:
        async def put(self, key: str, value: str, *, ttl: float | None = None, indexes: Any = ()) -> None:
            writes.append((key, value, tuple(indexes)))

    repo = StoreCredentialRepository(Capture())  # type: ignore[arg-type]
    for i in range(users):
        secret = user_secret(seed, i)
        data = {
            "secret": service.keys.seal("totp-secret", secret.encode("ascii")),
            "digits": 6,
            "algorithm": "SHA1",
            "period": PERIOD,
            "label": f"bench:{user_id(i)}",
        }
        credential = Credential(
            id=f"cred_bench{i}",
            user_id=user_id(i),
            method="totp",
            format=CredentialFormat.TOTP,
            factor=Factor.MFA,
            created_at=time.time(),
            type="authenticatorApp",
            alias="Authenticator app",
            data=data,
        )
        await repo.save(credential)
    if kind == "sqlite":
        # One transaction for the lot (the layout the store keeps); the store reads them as usual.
        import sqlite3

        from stepup_core.store.sqlite import sqlite_path_from_url

        with sqlite3.connect(sqlite_path_from_url(store_url)) as conn:
            conn.executemany("INSERT OR REPLACE INTO records (key, value, expires_at) VALUES (?, ?, NULL)",
                             [(k, v) for k, v, _ in writes])
            conn.executemany("INSERT OR IGNORE INTO record_indexes (index_name, key) VALUES (?, ?)",
                             [(name, k) for k, _, names in writes for name in names])
        return
    for start_at in range(0, len(writes), 500):
        chunk = writes[start_at : start_at + 500]
        await asyncio.gather(*(service.store.put(k, v, indexes=names) for k, v, names in chunk))


async def _serve(kind: str, store_url: str, seed: str, users: int) -> None:
    import pyotp

    from stepup_core.config import config_from_mapping
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.server import build_app, requires_scope
    from stepup_core.service import StepUpService

    config = config_from_mapping({"store": store_url, "secret_key": secrets.token_hex(32)})
    service = await StepUpService.create(config, pm=get_plugin_manager())
    await _seed(service, kind, store_url, seed, users)
    floor_secrets = {user_id(i): user_secret(seed, i) for i in range(users)}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def bare_post(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": True, "scope": body.get("scope")})

    async def bare_totp(request: web.Request) -> web.Response:
        body = await request.json()
        principal = _principal_from(request)
        secret = floor_secrets.get(principal.user_id) if principal else None
        code = body.get("response", {}).get("code")
        if secret is None or not isinstance(code, str) or not pyotp.TOTP(secret).verify(code, valid_window=1):
            return web.json_response({"ok": False}, status=400)
        return web.json_response({"ok": True, "scopes": body.get("requestedScopes")})

    app = build_app(service, _identify)
    app.router.add_get("/open", handler)
    app.router.add_get("/guarded", requires_scope(SCOPE)(handler))
    app.router.add_get("/floor-guard", _floor_guard(service.store, handler))
    app.router.add_post("/bare-post", bare_post)
    app.router.add_post("/bare-totp", bare_totp)

    from stepup_core.models import Principal

    issued = await service.tokens.mint(
        Principal(user_id=user_id(0), session_id="bench-session"), [SCOPE], method="benchmark", ttl=3600,
        single_use=False,
    )
    await serve_until_terminated(
        web.AppRunner(app, access_log=None), info={"token": issued.elevated_access_token}, cleanup=service.close
    )


# --- the load (this process) -----------------------------------------------------------------------


class FreshCodes:
    """Hands out (user, code) pairs so that no device's time step is used twice and every user's
    steps only increase: each user gets the current step and the next one, per time step."""

    def __init__(self, seed: str, users: int) -> None:
        import pyotp

        self._otps = [pyotp.TOTP(user_secret(seed, i)) for i in range(users)]
        self._next_step = [0] * users
        self._order = itertools.cycle(range(users))

    async def next(self) -> tuple[str, str]:
        while True:
            now_step = int(time.time() // PERIOD)
            for _ in range(len(self._otps)):
                index = next(self._order)
                step = max(self._next_step[index], now_step)
                if step <= now_step + 1:
                    self._next_step[index] = step + 1
                    return user_id(index), self._otps[index].generate_otp(step)
            # Every device has used this step and the next: wait for the next time step.
            await asyncio.sleep(PERIOD - time.time() % PERIOD + 0.01)


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    payload = json.dumps(body)
    hdrs = {**headers, "Content-Type": "application/json"}

    async def request(session: ClientSession) -> bool:
        async with session.post(url, data=payload, headers=hdrs) as resp:
            await resp.read()
            return resp.status == 200

    return request


def _get(url: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    async def request(session: ClientSession) -> bool:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    return request


def _post_code(url: str, codes: FreshCodes):  # type: ignore[no-untyped-def]
    async def request(session: ClientSession) -> bool:
        user, code = await codes.next()
        body = {"method": "totp", "response": {"code": code}, "requestedScopes": [SCOPE]}
        headers = {"Authorization": f"Bearer {user}:bench-session"}
        async with session.post(url, json=body, headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    return request


def _cases(server: Server, seed: str, users: int) -> list[Case]:
    session = {"Authorization": f"Bearer {user_id(0)}:bench-session"}
    guarded = {**session, "X-Elevated-Access-Token": server.info["token"]}
    return [
        Case(server, "bare-totp", _post_code(f"{server.base}/bare-totp", FreshCodes(seed, users))),
        Case(server, "totp-verify", _post_code(f"{server.base}/stepup/verify", FreshCodes(seed, users))),
        Case(server, "bare-post", _post_json(f"{server.base}/bare-post", {"scope": SCOPE}, session)),
        Case(server, "check", _post_json(f"{server.base}/stepup/check", {"scope": SCOPE}, session)),
        Case(server, "unprotected", _get(f"{server.base}/open", guarded)),
        Case(server, "protected", _get(f"{server.base}/guarded", guarded)),
        Case(server, "floor-guard", _get(f"{server.base}/floor-guard", guarded)),
    ]


async def _main(args: argparse.Namespace) -> int:
    kinds = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown store kinds {unknown}; choose from {', '.join(KINDS)}")
    print(
        f"verify benchmark: {args.concurrency} concurrent connections, {args.rounds} rounds x {args.seconds:g} s "
        f"per store and case (alternating order), {args.warmup:g} s warm-up, {args.users} users with an "
        f"authenticator app, {'with' if args.with_otel else 'without'} stepup-otel; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    if not args.with_otel:
        disabled = {n for n in os.environ.get("STEPUP_DISABLE_PLUGINS", "").split(",") if n}
        os.environ["STEPUP_DISABLE_PLUGINS"] = ",".join(sorted(disabled | {"otel"}))  # the servers inherit it
    seed = secrets.token_hex(8)
    workdir = Path(tempfile.mkdtemp(prefix="stepup-bench-verify-"))
    servers: list[Server] = []
    cases: list[Case] = []
    redis_server: Any = None
    postgres_cluster: Any = None
    try:
        for kind in kinds:
            if kind == "memory":
                url = "memory:"
            elif kind == "sqlite":
                url = f"sqlite:{workdir / 'stepup.sqlite3'}"
            elif kind == "redis":
                from stepup_redis.testing import RedisServer

                redis_server = RedisServer(directory=workdir / "redis")
                redis_server.start()
                url = redis_server.url
            else:
                from stepup_postgres.testing import PostgresCluster

                postgres_cluster = PostgresCluster.create()
                postgres_cluster.start()
                # Over the cluster's unix socket, as an application reaches a database on its host.
                url = (
                    f"postgresql://stepup@/postgres?host={postgres_cluster.socket_dir}"
                    f"&port={postgres_cluster.port}&max_size=20"
                )
            server = await start(kind, __file__, kind, url, seed, str(args.users))
            servers.append(server)
            cases.extend(_cases(server, seed, args.users))
        await measure(cases, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                      concurrency=args.concurrency)
    finally:
        for server in servers:
            await stop(server.proc)
        if redis_server is not None:
            redis_server.stop()
        if postgres_cluster is not None:
            postgres_cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print_table(cases)
    print()
    by_name = {(c.server.name, c.name): c for c in cases}
    missed = False
    for label, numerator, denominator in COMPARISONS:
        for server in servers:
            ratio, per_round = cpu_ratio(by_name[server.name, numerator], by_name[server.name, denominator])
            target = TARGETS[label].get(server.name)
            ok = target is None or ratio <= target
            missed |= not ok
            verdict = "" if target is None else f"  (target <= {target:g}: {'met' if ok else 'MISSED'})"
            print(f"{server.name:<9} {label:<22} = {ratio:5.2f}{verdict}")
            print(f"{'':<9}   by round: {', '.join(f'{r:.2f}' for r in per_round)}")
    failures = sum(c.total.failures for c in cases)
    if failures:
        print(f"{failures} requests did not answer 200")
        return 1
    return 1 if (missed and args.strict) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="memory,sqlite,redis,postgres")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per case per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--users", type=int, default=30000, help="benchmark users, one authenticator app each")
    parser.add_argument("--with-otel", action="store_true", help="load stepup-otel in the servers too")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "URL", "SEED", "USERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, url, seed, users = args.serve
        asyncio.run(_serve(kind, url, seed, int(users)))
        return 0
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
