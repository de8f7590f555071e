"""``stepup serve`` with a bad configuration prints the error and exits at once, whichever step
of the start failed: the store, a plugin table, ``[identify]`` or the scope policies. Each runs
as a separate process with a deadline: a start that leaves something open (the SQLite store's
worker thread) keeps the process alive after the error, and the deadline catches it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: Far above a normal exit (well under two seconds), far below "hangs forever".
DEADLINE_SECONDS = 30
IDENTIFY = '[identify]\nmode = "tokens"\n[identify.tokens."dev-token-0123456789abcdef"]\nuser_id = "ann"\n'
KEY = "ab" * 32

CASES = {
    "store": (
        f'store = "sqlite:not-a-database.sqlite3"\nsecret_key = "{KEY}"\n{IDENTIFY}',
        "SQLite store 'not-a-database.sqlite3' could not be read: the file is not a SQLite database",
    ),
    "plugin-table": (
        f'store = "sqlite:state/stepup.sqlite3"\nsecret_key = "{KEY}"\n{IDENTIFY}[plugins.totpp]\ndigits = 6\n',
        "[plugins.totpp] configures a plugin that is not installed; installed plugins: ",
    ),
    "identify": (
        f'store = "sqlite:state/stepup.sqlite3"\nsecret_key = "{KEY}"\n[identify]\nmode = "jwt"\n',
        "identify.mode = 'jwt' needs identify.jwks_url or identify.key",
    ),
    "scopes": (
        f'store = "sqlite:state/stepup.sqlite3"\nsecret_key = "{KEY}"\n{IDENTIFY}'
        '[scopes."billing:refund"]\nallowed_methods = ["passkeyy"]\n',
        "scopes.billing:refund.allowed_methods names passkeyy, which is not installed; installed methods: ",
    ),
}


def run_serve(config: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    (cwd / "stepup.toml").write_text(config, encoding="utf-8")
    (cwd / "not-a-database.sqlite3").write_bytes(b"this file is not a SQLite database" * 100)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", "serve", "--config", "stepup.toml", "--port", "0"],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,  # raises TimeoutExpired (the test fails) if the process hangs
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize("kind", list(CASES))
def test_a_bad_configuration_exits_at_once_with_the_error(kind: str, tmp_path: Path) -> None:
    config, message = CASES[kind]
    result, elapsed = run_serve(config, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0]
    assert "Traceback" not in result.stderr
    assert "stepup listening" not in result.stdout
    assert elapsed < DEADLINE_SECONDS
