"""The Node handler of docs/sidecar.md, that exact file (``docs/examples/sidecar.mjs``), against a
real ``stepup serve``: the protected-route conformance suite runs through it, so a Node
application beside stepup answers like every Python guard.

``stepup serve --config`` runs as its own process on a SQLite store; this test opens the same
store to mint real tokens and to compute the answers stepup's guard core gives. "Store down"
is stepup itself gone: the Node application answers 503 until it is back (on the same port),
and the single-use token it could not check is still good.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepup_core.config import load_config
from stepup_core.introspection import new_service_credential
from stepup_core.models import Principal
from stepup_core.server.http import Answer
from stepup_core.service import StepUpService
from stepup_core.testing.protected import ProtectedRouteSuite, ProtectedTarget

ROOT = Path(__file__).resolve().parents[1]
SIDECAR = ROOT / "docs" / "examples" / "sidecar.mjs"
NODE = shutil.which("node")
STARTUP_SECONDS = 20


async def _read_until(process: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    assert process.stdout is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), STARTUP_SECONDS)).decode()
        if not line:
            raise AssertionError(f"the process ended before printing {pattern!r}:\n{''.join(seen)}")
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found


async def _stop(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except asyncio.TimeoutError:  # Python 3.10 raises this one, not TimeoutError
        process.kill()
        await process.wait()


class StepUpServe:
    """``stepup serve --config`` in a process of its own, stopped and started at will."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._drains: set[asyncio.Future[None]] = set()

    async def start(self) -> str:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stepup_core.cli", "serve", "--config", str(self.config), "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        found = await _read_until(self.process, r"stepup listening on (http://127\.0\.0\.1:(\d+)/stepup)")
        self.port = int(found.group(2))
        self._drain()
        return found.group(1)

    def _drain(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        stdout = process.stdout

        async def drain() -> None:
            while await stdout.readline():
                pass

        task = asyncio.ensure_future(drain())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def stop(self) -> None:
        await _stop(self.process)


class TestNodeSidecar(ProtectedRouteSuite):
    adapter = "node (docs/examples/sidecar.mjs)"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[ProtectedTarget]:
        assert NODE is not None, "these tests need Node.js 18 or newer on PATH (.ci/run installs it)"
        credential, digest = new_service_credential()
        config = tmp_path / "stepup.toml"
        config.write_text(
            f'store = "sqlite:{tmp_path / "stepup.sqlite3"}"\n'
            f'secret_key = "{secrets.token_hex(32)}"\n'
            # Methods a plugin installs beside the core may only print codes: fine for this test.
            "allow_console_delivery = true\n"
            "[identify]\nmode = \"tokens\"\n"
            f'[identify.tokens."{secrets.token_urlsafe(24)}"]\nuser_id = "nobody"\n'
            f"[introspection.clients]\nnode = \"{digest}\"\n"
        )
        serve = StepUpServe(config)
        stepup_url = await serve.start()
        # The same store, opened here: real tokens to present, and the answers to expect.
        local = await StepUpService.create(load_config(config))
        node = await asyncio.create_subprocess_exec(
            str(NODE), str(SIDECAR),
            env={**os.environ, "STEPUP_URL": stepup_url, "STEPUP_SERVICE_CREDENTIAL": credential, "PORT": "0"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            found = await _read_until(node, r"listening on (http://127\.0\.0\.1:\d+)")

            async def mint(principal: Principal, scope: str, ttl: float) -> str:
                behavior, _ = local.policies.token_shape([scope])
                issued = await local.tokens.mint(
                    principal, [scope], method="conformance", ttl=ttl, single_use=behavior.value == "single_use"
                )
                return issued.elevated_access_token

            async def refusal(principal: Principal, scope: str) -> Answer:
                from stepup_core.server.problems import problem_answer

                message = f"step-up authentication is required for {scope}"
                return problem_answer(await local.gate.step_up_required(principal, scope, message))

            async def set_store_down(down: bool) -> None:
                if down:
                    await serve.stop()
                else:
                    await serve.start()

            yield ProtectedTarget(
                base_url=found.group(1), mint=mint, refusal=refusal, set_store_down=set_store_down, advance=None
            )
        finally:
            await _stop(node)
            await serve.stop()
            await local.close()


def test_the_sidecar_doc_includes_the_file_that_runs() -> None:
    text = (ROOT / "docs" / "sidecar.md").read_text(encoding="utf-8")
    assert '--8<-- "examples/sidecar.mjs"' in text
    source = SIDECAR.read_text(encoding="utf-8")
    assert 'import http from "node:http";' in source
    assert re.findall(r'^import .* from "([^"]+)";', source, re.M) == ["node:http"]  # no package
