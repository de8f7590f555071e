"""What the HTTP benchmarks share: servers in their own processes, interleaved rounds of load
over loopback, and the servers' CPU time per request read from /proc.

A benchmark script starts one server process per store (``python SCRIPT --serve ...``, which
prints one JSON line with its port and whatever else the load needs), then measures every
(server, case) pair in every round, the order flipping from round to round, so a change in the
machine's load falls on all of them alike. CPU per request is the server's own (user + system,
all its threads), which does not depend on how fast the load generator is; per-round values are
kept so a reader can see the spread on a busy machine.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from aiohttp import ClientSession, TCPConnector

#: One request of a case: returns True when the answer was the expected success.
Request = Callable[[ClientSession], Awaitable[bool]]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (every thread), from /proc; None if it is gone."""
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
    #: Server CPU microseconds per request of each round, in order.
    round_cpu_us: list[float] = attrs.field(factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def server_busy(self) -> float:
        return self.server_cpu / self.seconds if self.seconds else 0.0

    def add_round(self, other: Tally) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu
        self.round_rates.append(other.rate)
        self.round_cpu_us.append(other.cpu_per_request_us)


async def load(session: ClientSession, request: Request, seconds: float, concurrency: int) -> Tally:
    """``concurrency`` workers repeating ``request`` for ``seconds``."""
    deadline = time.perf_counter() + seconds
    tally = Tally()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            if await request(session):
                tally.requests += 1
            else:
                tally.failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally


@attrs.define
class Server:
    """A server process started by :func:`start`; ``info`` is the JSON line it printed."""

    name: str
    proc: asyncio.subprocess.Process
    info: dict[str, Any]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.info['port']}"

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.proc.pid)


async def start(name: str, script: str, *args: str, timeout: float = 600.0) -> Server:
    """Run ``python script --serve args...`` and wait for its JSON line (port and details)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, script, "--serve", *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=timeout)
        if not line:
            raise SystemExit(f"{name}: the server exited before it was ready")
        info = json.loads(line)
    except BaseException:
        await stop(proc)
        raise
    return Server(name, proc, info)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def server_directory(prefix: str = "stepup-bench-") -> str:
    """In a server process: a new temporary directory for its files (a SQLite store), removed
    when the process exits, so no run leaves one behind: after the orderly stop on SIGTERM (once
    the server has closed its store), after a failure, and after a SIGTERM that comes before the
    server has put its own handler in place (it then raises SystemExit instead of killing the
    process outright, so the removal still runs)."""
    directory = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return directory


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


async def serve_until_terminated(runner: Any, *, info: dict[str, Any], cleanup: Callable[[], Awaitable[None]]) -> None:
    """In a server process: start ``runner`` (an aiohttp AppRunner) on a free loopback port,
    print ``info`` with the port as one JSON line, serve until SIGTERM, then clean up."""
    from aiohttp import web

    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port, **info}), flush=True)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop_event.set)
    await stop_event.wait()
    await runner.cleanup()
    await cleanup()


@attrs.define
class Case:
    """One measured thing on one server: ``request`` repeated under load."""

    server: Server
    name: str
    request: Request
    total: Tally = attrs.field(factory=Tally)


async def measure(
    cases: Sequence[Case], *, rounds: int, seconds: float, warmup: float, concurrency: int
) -> None:
    """Warm every case up, then run ``rounds`` rounds over every case, the order flipping between
    rounds; each case's ``total`` gathers the rounds."""
    async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:
        for case in cases:
            warm = await load(session, case.request, warmup, concurrency)
            if warm.failures or not warm.requests:
                raise SystemExit(
                    f"{case.server.name} {case.name}: warm-up failed ({warm.failures} unexpected answers)"
                )
        for round_no in range(rounds):
            for case in cases if round_no % 2 == 0 else list(reversed(cases)):
                cpu_before = case.server.cpu_seconds()
                tally = await load(session, case.request, seconds, concurrency)
                cpu_after = case.server.cpu_seconds()
                if cpu_before is not None and cpu_after is not None:
                    tally.server_cpu = cpu_after - cpu_before
                case.total.add_round(tally)


def print_table(cases: Sequence[Case]) -> None:
    header = (
        f"{'store':<11} {'case':<14} {'requests':>9} {'failures':>8} {'req/s':>8} "
        f"{'server cpu/req':>15} {'busy':>5}   per round (server cpu us/req)"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        t = case.total
        rounds = ", ".join(f"{v:.0f}" for v in t.round_cpu_us)
        print(
            f"{case.server.name:<11} {case.name:<14} {t.requests:>9} {t.failures:>8} {t.rate:>8.0f} "
            f"{t.cpu_per_request_us:>12.0f} us {t.server_busy:>5.0%}   {rounds}"
        )


def cpu_ratio(numerator: Case, denominator: Case) -> tuple[float, list[float]]:
    """Server CPU per request of ``numerator`` over ``denominator``: overall and per round."""
    overall = (
        numerator.total.cpu_per_request_us / denominator.total.cpu_per_request_us
        if denominator.total.cpu_per_request_us
        else float("inf")
    )
    pairs = zip(numerator.total.round_cpu_us, denominator.total.round_cpu_us, strict=True)
    return overall, [n / d if d else float("inf") for n, d in pairs]
