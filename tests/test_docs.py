"""Docs stay in step with the code: every hook is documented with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from stepup_core import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"


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


def test_the_configuration_example_is_a_valid_configuration(monkeypatch, tmp_path) -> None:
    import secrets

    from stepup_core.config import load_config

    text = (DOCS / "configuration.md").read_text()
    example = tmp_path / "stepup.toml"
    example.write_text(re.search(r"```toml\n(.*?)```", text, re.S).group(1))
    monkeypatch.setenv("STEPUP_SECRET_KEY", secrets.token_hex(32))
    config = load_config(example)
    policy = config.scope_policies().policy_for("wallet:export")
    assert (policy.acr_values, policy.max_age, policy.accept_sign_in) == (("phr",), 60, True)
    assert config.scope_policies().policy_for("user:update").signed is True
    assert list(config.introspection.clients) == ["billing"]
