"""Docs stay in step with the code: every hook is documented with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from stepup_core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _signature(name: str) -> str:
    return f"def {name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")


def test_every_hook_has_a_section_with_its_exact_signature():
    text = (DOCS / "hooks.md").read_text()
    documented = dict(re.findall(r"^## (stepup_\w+)\n\n```python\n(def stepup_\w+\(.*)\n```", text, re.M))
    assert set(documented) == set(hookspecs.HOOK_NAMES), "hooks.md sections differ from the hookspecs"
    for name, signature in documented.items():
        assert signature == _signature(name), f"documented signature of {name} drifted"


def test_every_hook_has_a_test():
    tests = Path(__file__).resolve().parent
    text = "\n".join(p.read_text() for p in tests.glob("test_*.py"))
    missing = [name for name in hookspecs.HOOK_NAMES if f"def test_hook_{name}(" not in text]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_the_configuration_example_shows_rfc9470_signed_grants_and_introspection(monkeypatch, tmp_path) -> None:
    import secrets

    from stepup_core.config import load_config

    text = (DOCS / "configuration.md").read_text()
    example = tmp_path / "stepup.toml"
    example.write_text(re.search(r"```toml\n(.*?)```", text, re.S).group(1))
    monkeypatch.setenv("STEPUP_SECRET_KEY", secrets.token_hex(32))
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    config = load_config(example)
    policy = config.scope_policies().policy_for("wallet:export")
    assert (policy.acr_values, policy.max_age, policy.accept_sign_in) == (("phr",), 60, True)
    assert config.scope_policies().policy_for("user:update").signed is True
    assert list(config.introspection.clients) == ["billing"]


def test_the_conformance_suite_hooks_are_documented_with_their_signatures():
    from stepup_core.testing.verifiers import VerifierConformanceSuite

    text = (DOCS / "writing-plugins.md").read_text()
    [block] = re.findall(r"```python\nclass VerifierConformanceSuite:\n(.*?)```", text, re.S)
    documented = [line.strip() for line in block.splitlines() if "def " in line]
    hooks = ["plugins", "plugin_config", "enroll", "valid_response", "wrong_response", "malformed_responses"]
    expected = []
    for name in hooks:
        function = getattr(VerifierConformanceSuite, name)
        prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
        expected.append(f"{prefix} {name}{inspect.signature(function)}".replace("'", ""))
    assert documented == expected
    assert "method: ClassVar[str]" in block


def test_writing_plugins_names_the_pytest_settings_the_suites_need():
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    text = (DOCS / "writing-plugins.md").read_text()
    section = text[text.index("## 5. Test with the conformance suite") :]
    [settings] = re.findall(r"```toml\n(.*?)```", section, re.S)[:1]
    documented = tomllib.loads(settings)["tool"]["pytest"]["ini_options"]
    example = Path(__file__).resolve().parents[1] / "plugins" / "stepup-example" / "pyproject.toml"
    actual = tomllib.loads(example.read_text())["tool"]["pytest"]["ini_options"]
    assert documented == actual
    assert documented["asyncio_mode"] == "auto"


def test_every_prompt_screen_is_saved_by_a_browser_test_and_shown_in_the_docs() -> None:
    import ast

    source = (ROOT / "tests" / "browser" / "test_prompt.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    screens = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SCREENS" for t in node.targets)
    )
    saved = {
        node.args[2].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "check_screen"
        and len(node.args) == 3
        and isinstance(node.args[2], ast.Constant)
    }
    assert set(screens) == saved, "a screen listed but not saved by a test, or saved but not listed"
    page = (ROOT / "docs" / "browser.md").read_text(encoding="utf-8")
    pictures = {p.name for p in (ROOT / "docs" / "img").glob("prompt-*.png")}
    assert pictures == {f"prompt-{name}.png" for name in screens}
    for name in screens:
        assert f"](img/prompt-{name}.png)" in page, name
