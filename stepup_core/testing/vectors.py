"""Where the shared conformance vectors live, and loading them.

The vectors sit in ``../shared/vectors`` next to the project root (``STEPUP_VECTORS`` overrides).
When they are missing a test skips, except under CI (``CI`` set), where it fails: a conformance
check must never silently vanish.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def _candidates() -> list[Path]:
    out = []
    if os.environ.get("STEPUP_VECTORS"):
        out.append(Path(os.environ["STEPUP_VECTORS"]))
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        out.append(parent / ".." / "shared" / "vectors")
        out.append(parent / "shared" / "vectors")
    return out


def vectors_dir() -> Path:
    for candidate in _candidates():
        if (candidate / "README.md").is_file():
            return candidate.resolve()
    message = "conformance vectors not found: set STEPUP_VECTORS or place them in ../shared/vectors"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError  # unreachable


def load_vectors(name: str) -> Any:
    """Parse one vector file, ``name`` relative to the vectors directory (``siwe/eip1271.json``)."""
    return json.loads((vectors_dir() / name).read_text(encoding="utf-8"))
