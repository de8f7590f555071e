"""The README's code runs as written: the aiohttp application is whole (where ``service`` and
``identify`` come from included) and guards its route; the client snippet names real things."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stepup_core.server import serve_app

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


async def test_the_aiohttp_application_runs_and_guards_its_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [source] = [block for block in python_blocks() if "mount(app, service, identify)" in block]
    monkeypatch.chdir(tmp_path)  # load_config(): the SQLite store in the working directory
    monkeypatch.delenv("STEPUP_SECRET_KEY", raising=False)
    namespace: dict[str, Any] = {"__name__": "readme_app"}
    exec(compile(source, "README.md", "exec"), namespace)
    app = await namespace["make_app"]()
    async with serve_app(app) as base_url, aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/stepup/methods") as resp:
            assert resp.status == 200
        signed_in = {"Authorization": "Bearer alice-session-token"}
        async with http.post(f"{base_url}/wallet/export", headers=signed_in) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_user_authentication"')
            assert (await resp.json())["check"]["isRequired"] is True
        async with http.post(f"{base_url}/stepup/check", json={"scope": "wallet:export"}, headers=signed_in) as resp:
            assert resp.status == 200
        async with http.post(f"{base_url}/wallet/export") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "unauthenticated"
    assert (tmp_path / "stepup.sqlite3").is_file()


def test_the_client_snippet_uses_real_names() -> None:
    [source] = [block for block in python_blocks() if "StepUpClient(" in block]
    tree = ast.parse(source.replace("async with", "with").replace("await ", ""))
    from stepup_core import client

    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert imported and all(hasattr(client, name) for name in imported)
    called = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert called <= set(dir(client.StepUpClient)), called - set(dir(client.StepUpClient))
