"""A wrong ``[plugins.totp]`` value stops ``stepup serve`` with the error, and the process exits
at once: the SQLite store opened before the plugin read its table is closed again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

DEADLINE_SECONDS = 30
CONFIG = """\
store = "sqlite:state/stepup.sqlite3"
secret_key = "{key}"

[identify]
mode = "tokens"
[identify.tokens."dev-token-0123456789abcdef"]
user_id = "ann"

[plugins.totp]
digits = 9
"""


def test_a_wrong_plugin_value_exits_at_once_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "stepup.toml").write_text(CONFIG.format(key="cd" * 32), encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", "serve", "--config", "stepup.toml", "--port", "0"],
        cwd=tmp_path,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,  # a start that leaves the store open never exits
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: plugins.totp.digits must be an integer from 6 to 8, got 9" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "state" / "stepup.sqlite3").is_file()  # the store had been opened
    assert elapsed < DEADLINE_SECONDS
