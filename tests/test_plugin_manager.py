"""get_plugin_manager: entry points one by one, allow and deny lists, built-ins, check_pending."""

from __future__ import annotations

import logging
import textwrap
from importlib.metadata import EntryPoint

import pytest

from stepup_core import plugins
from stepup_core.errors import PluginError
from stepup_core.hookspecs import HOOK_NAMES


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch):
    (tmp_path / "stepup_fake_good.py").write_text(
        textwrap.dedent(
            """
            from stepup_core import hookimpl

            @hookimpl
            def stepup_register_client_methods(register):
                pass
            """
        )
    )
    (tmp_path / "stepup_fake_broken.py").write_text("raise ImportError('missing native library libfoo')\n")
    (tmp_path / "stepup_fake_misspelt.py").write_text(
        "from stepup_core import hookimpl\n\n@hookimpl\ndef stepup_regster_verifiers(register, config):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        EntryPoint(name="good", value="stepup_fake_good", group="stepup"),
        EntryPoint(name="broken", value="stepup_fake_broken", group="stepup"),
    ]
    monkeypatch.setattr(plugins, "_stepup_entry_points", lambda: list(eps))
    return eps


def test_broken_plugin_is_reported_and_the_rest_load(fake_entry_points, caplog, monkeypatch):
    monkeypatch.delenv("STEPUP_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("STEPUP_DISABLE_PLUGINS", raising=False)
    caplog.set_level(logging.ERROR, logger="stepup")
    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("good") is not None
    assert pm.get_plugin("broken") is None
    assert [(f.name, f.error) for f in pm.load_failures] == [("broken", "ImportError: missing native library libfoo")]
    assert "'broken' failed to load" in caplog.text


def test_allow_list_and_deny_list(fake_entry_points, monkeypatch):
    monkeypatch.setenv("STEPUP_LOAD_PLUGINS", "")
    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("good") is None and not pm.load_failures  # empty allow-list: none
    monkeypatch.setenv("STEPUP_LOAD_PLUGINS", "good")
    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("good") is not None and not pm.load_failures
    monkeypatch.delenv("STEPUP_LOAD_PLUGINS")
    monkeypatch.setenv("STEPUP_DISABLE_PLUGINS", "good, broken")
    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("good") is None and pm.is_blocked("good") and not pm.load_failures


def test_builtins_are_registered_without_entry_points():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    names = {name for name, _ in pm.list_name_plugin()}
    assert set(plugins.DEFAULT_PLUGINS) <= names
    described = plugins.describe_plugins(pm, include_builtin=True)
    hooks = {h for row in described for h in row["hooks"]}
    assert {"stepup_check", "stepup_deliver_code", "stepup_register_stores", "stepup_event"} <= hooks
    assert plugins.describe_plugins(pm) == []


def test_misspelt_hook_fails_loudly(tmp_path, monkeypatch):
    (tmp_path / "stepup_fake_typo.py").write_text(
        "from stepup_core import hookimpl\n\n@hookimpl\ndef stepup_regster_verifiers(register, config):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("STEPUP_LOAD_PLUGINS", raising=False)
    monkeypatch.setattr(plugins, "_stepup_entry_points",
                        lambda: [EntryPoint(name="typo", value="stepup_fake_typo", group="stepup")])
    with pytest.raises(PluginError, match="stepup_regster_verifiers"):
        plugins.get_plugin_manager()


def test_every_hook_is_documented_like_pytest():
    from stepup_core import hookspecs

    for name in HOOK_NAMES:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert ":param" in doc, name
        assert getattr(hookspecs, name).__annotations__.get("return") is not None, name


def test_trace_plugins_prints_each_hook_call_and_its_results(monkeypatch, capsys):
    monkeypatch.setenv("STEPUP_TRACE_PLUGINS", "1")
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    from stepup_core.store import store_factories

    assert {"memory", "sqlite"} <= set(store_factories(pm))
    err = capsys.readouterr().err
    assert "stepup_register_stores:" in err
    assert "stepup_core.default_plugins.stores" in err and "results:" in err


def test_without_trace_plugins_hook_calls_print_nothing(monkeypatch, capsys):
    monkeypatch.delenv("STEPUP_TRACE_PLUGINS", raising=False)
    from stepup_core.store import store_factories

    store_factories(plugins.get_plugin_manager(load_entrypoints=False))
    assert "stepup_register_stores" not in capsys.readouterr().err
