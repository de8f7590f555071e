"""The PIN examples of docs/http-api.md are what this plugin answers: each documented request is
sent to a real server with stepup-example installed, and the answer must match the documented
one (ids, tokens and times aside). Copying this plugin for a method of your own: delete this
file, it checks this repository's documentation."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import stepup_example.plugin

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.stack import StepUpStack

DOC = Path(__file__).resolve().parents[3] / "docs" / "http-api.md"
RANDOM = [
    (re.compile(r"\b(enr|chl|cred)_[A-Za-z0-9_-]+"), r"\1_ID"),
    (re.compile(r"\bsut_[A-Za-z0-9_-]+"), "sut_TOKEN"),
]
TIMES = ("expiresAt", "createdAt", "lastUsedAt")


@attrs.frozen
class Exchange:
    method: str
    path: str
    body: Any
    #: The documented answer's status and body; None when the page shows the request alone.
    status: int | None
    answer: Any


def _split(block: str) -> tuple[str, Any]:
    head, _, body = block.partition("\n\n")
    return head.splitlines()[0], json.loads(body) if body.strip() else None


def exchanges() -> list[Exchange]:
    """Every request to a stepup route shown on the page, with the answer shown right after it."""
    text = DOC.read_text(encoding="utf-8")
    blocks = list(re.finditer(r"```(http|json)\n(.*?)```", text, flags=re.S))
    found = []
    for index, block in enumerate(blocks):
        lang, request = block.groups()
        if lang != "http" or request.startswith("HTTP/") or not request.split()[1].startswith("/stepup/"):
            continue
        line, body = _split(request)
        method, path = line.split()[:2]
        status, answer = None, None
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        adjacent = following is not None and not text[block.end() : following.start()].strip()
        if following is not None and adjacent and following.group(2).startswith("HTTP/"):
            status = int(following.group(2).split()[1])
            answer = _split(following.group(2))[1]
        found.append(Exchange(method, path, body, status, answer))
    return found


def exchange(method: str, path: str) -> Exchange:
    """The example for ``path``, where ``{id}`` stands for any id."""
    pattern = re.compile(re.escape(path).replace(r"\{id\}", r"[a-z]+_[A-Za-z0-9_-]+") + r"\Z")
    [found] = [e for e in exchanges() if e.method == method and pattern.match(e.path)]
    return found


def methods_example() -> Any:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Methods") :]
    return json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.S)[0])


def normalised(value: Any) -> Any:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("TIME" if k in TIMES and v is not None else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    text = json.dumps(walk(value), sort_keys=True)
    for pattern, replacement in RANDOM:
        text = pattern.sub(replacement, text)
    return json.loads(text)


@pytest.fixture
async def stack() -> AsyncIterator[StepUpStack]:
    """The PIN method registered under its entry-point name, as an installed stepup-example is."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_example.plugin, name="pin")
    config = config_from_mapping({"store": "memory:", "secret_key": secrets.token_hex(32)})
    service = await StepUpService.create(config, pm=pm, clock=ManualClock())
    async with StepUpStack.serve(service) as served:
        yield served
    await service.close()


async def send(stack: StepUpStack, example: Exchange, token: str | None = None, **ids: str) -> Any:
    """Send the documented request (with today's ids) and compare the answer with the page's."""
    text = json.dumps([example.path.removeprefix("/stepup"), example.body])
    for prefix, value in ids.items():
        text = re.sub(rf"\b{prefix}_[A-Za-z0-9_-]+", value, text)
    path, body = json.loads(text)
    status, answer = await stack.api("alice", example.method, path, body, token=token)
    where = f"{example.method} {example.path}"
    if example.status is not None:
        assert status == example.status, f"{where}: {status} {answer}"
        assert normalised(answer) == normalised(example.answer), f"{where} answers differently: {answer}"
    return status, answer


REPLAYED = [
    ("GET", "/stepup/methods"),
    ("GET", "/stepup/credentials"),
    ("POST", "/stepup/enrollments"),
    ("POST", "/stepup/enrollments/{id}"),
    ("POST", "/stepup/check"),
    ("POST", "/stepup/challenges"),
    ("POST", "/stepup/verify"),
    ("PATCH", "/stepup/credentials/{id}"),
    ("DELETE", "/stepup/credentials/{id}"),
]


async def test_the_documented_pin_exchanges_are_what_the_server_answers(stack: StepUpStack) -> None:
    _, started = await send(stack, exchange("POST", "/stepup/enrollments"))
    _, enrolled = await send(stack, exchange("POST", "/stepup/enrollments/{id}"), enr=started["enrollmentId"])
    assert enrolled["alias"] == "Desk PIN" and enrolled["format"] == "custom"
    await send(stack, exchange("POST", "/stepup/check"))
    status, methods = await send(stack, exchange("GET", "/stepup/methods"))
    assert status == 200 and methods == methods_example()
    status, credentials = await send(stack, exchange("GET", "/stepup/credentials"))
    assert status == 200 and [c["id"] for c in credentials] == [enrolled["id"]]
    _, challenge = await send(stack, exchange("POST", "/stepup/challenges"), cred=enrolled["id"])
    _, issued = await send(stack, exchange("POST", "/stepup/verify"), chl=challenge["challengeId"])
    assert issued["scopes"] == ["wallet:export"]

    async def token_for(scope: str) -> str:
        stack.clock.advance(1)
        request = {"method": "pin", "requestedScopes": [scope]}
        _, started = await stack.api("alice", "POST", "/challenges", request)
        verify = {"method": "pin", "challengeId": started["challengeId"], "response": {"pin": "246810"}}
        _, granted = await stack.api("alice", "POST", "/verify", verify)
        return str(granted["elevatedAccessToken"])

    status, updated = await send(
        stack, exchange("PATCH", "/stepup/credentials/{id}"), await token_for("credential:update"), cred=enrolled["id"]
    )
    assert status == 200 and (updated["alias"], updated["isDefault"]) == ("Work PIN", True)
    status, _ = await send(
        stack, exchange("DELETE", "/stepup/credentials/{id}"), await token_for("credential:unlink"), cred=enrolled["id"]
    )
    assert status == 204


def test_every_stepup_request_of_the_page_is_replayed() -> None:
    """A new example on the page joins the test above."""
    shown = {(e.method, re.sub(r"/[a-z]+_[A-Za-z0-9_-]+$", "/{id}", e.path)) for e in exchanges()}
    assert shown == set(REPLAYED)


# --- docs/writing-plugins.md: every name to change when copying this plugin -------------------

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
WRITING_PLUGINS = PLUGIN_ROOT.parents[1] / "docs" / "writing-plugins.md"


def rename_table() -> dict[str, str]:
    """What -> the names in stepup-example, from the page's rename table."""
    text = WRITING_PLUGINS.read_text(encoding="utf-8")
    section = text[text.index("## 1. Copy and rename") : text.index("## 2.")]
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", section, flags=re.M)
    return {what.strip(): ours for what, ours, _yours, _where in rows[1:] if not set(what) <= {"-"}}


def names_in_this_plugin() -> set[str]:
    """Every identity the plugin has: what a copy that kept one of them would share with it."""
    import ast
    import sys

    from stepup_example.client import PinClientMethod
    from stepup_example.verifier import HASH_PURPOSE, PinSettings, PinVerifier

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    project = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [(key, target)] = project["project"]["entry-points"]["stepup"].items()
    verifier, client = PinVerifier(PinSettings()), PinClientMethod()
    plugin_py = (PLUGIN_ROOT / "src" / "stepup_example" / "plugin.py").read_text(encoding="utf-8")
    names = {project["project"]["name"], key, target.split(".")[0], verifier.name, verifier.package}
    names |= {client.name, client.package, f'HASH_PURPOSE = "{HASH_PURPOSE}"'}
    names |= set(re.findall(r'plugin_section\("(\w+)"', plugin_py))
    for path in [*PLUGIN_ROOT.glob("src/**/*.py"), *PLUGIN_ROOT.glob("tests/*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and "Pin" in node.name}
    return names


def test_the_rename_table_lists_every_name_of_the_example() -> None:
    listed = set()
    for cell in rename_table().values():
        listed |= set(re.findall(r"`([^`]+)`", cell))
        listed |= set(re.findall(r'"(\w+)"', cell))
    missing = names_in_this_plugin() - listed
    assert not missing, f"docs/writing-plugins.md does not say to rename {sorted(missing)}"


def test_every_name_in_the_rename_table_exists_in_the_example() -> None:
    files = [p for p in PLUGIN_ROOT.rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".md"}]
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    for what, cell in rename_table().items():
        for name in re.findall(r"`([^`]+)`", cell):
            assert name in text, f"{what}: {name!r} is not in stepup-example"
