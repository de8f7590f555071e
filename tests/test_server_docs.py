"""docs/http-api.md stays in step with the server: every route, every error code with its
status, and the exact RFC 9470 challenge."""

from __future__ import annotations

import re
from pathlib import Path

from stepup_core import errors
from stepup_core.server.problems import (
    InternalError,
    RouteNotFound,
    step_up_challenge,
)
from stepup_core.server.routes import ROUTES

DOC = Path(__file__).resolve().parents[1] / "docs" / "http-api.md"


def _error_table() -> dict[str, int]:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    table: dict[str, int] = {}
    for code, status in rows:
        assert code not in table, f"{code} listed twice"
        table[code] = int(status)
    return table


def test_every_error_code_is_documented_with_its_status() -> None:
    classes = [*errors.ALL_ERRORS, RouteNotFound, InternalError]
    expected = {cls.code: cls.status for cls in classes}
    assert _error_table() == expected


def test_every_route_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for spec in ROUTES:
        assert f"`{spec.method} /stepup{spec.path}`" in text, f"{spec.method} {spec.path} is not in the routes table"


def test_the_documented_challenge_is_the_one_the_server_sends() -> None:
    assert f"WWW-Authenticate: {step_up_challenge('wallet:export')}" in DOC.read_text(encoding="utf-8")


def test_a_bad_token_is_documented_as_the_step_up_challenge_not_a_code_of_its_own() -> None:
    """No route answers ``invalid_token``: a malformed or otherwise invalid token is answered like
    no token (the RFC 9470 challenge) and audited; the docs say so and list no such code."""
    text = DOC.read_text(encoding="utf-8")
    assert "invalid_token" not in _error_table()
    assert errors.error_for_code("invalid_token") is errors.StepUpError
    assert "answered exactly like no token" in text and "grant_refused" in text
