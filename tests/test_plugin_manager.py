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
    monkeypatch.setattr(
        plugins, "_stepup_entry_points", lambda: [EntryPoint(name="typo", value="stepup_fake_typo", group="stepup")]
    )
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


# --- hooks on the request path call their implementations directly, exactly as pluggy would ---


def _check_args():
    from stepup_core.models import Principal
    from stepup_core.scopes import ScopePolicy

    return {"principal": Principal(user_id="u", session_id="s"), "scope": "a:b", "policy": ScopePolicy(required=True)}


class _Voter:
    def __init__(self, name, answer, calls):
        self.name, self.answer, self.calls = name, answer, calls

    @plugins.hookimpl
    def stepup_check(self, principal, scope, policy):
        self.calls.append(self.name)
        return self.answer


def test_call_hook_answers_what_pluggy_answers_in_its_order():
    from stepup_core.models import StepUpVote

    pm = plugins.get_plugin_manager(load_entrypoints=False)
    calls: list[str] = []
    pm.register(_Voter("first", StepUpVote(required=True, reason="first"), calls), name="first")
    pm.register(_Voter("silent", None, calls), name="silent")

    class Eager:
        @plugins.hookimpl(tryfirst=True)
        def stepup_check(self, principal, scope, policy):
            calls.append("eager")

    pm.register(Eager(), name="eager")
    direct = plugins.call_hook(pm, "stepup_check", **_check_args())
    direct_order, calls[:] = list(calls), []
    assert plugins.direct_impls(pm, "stepup_check") is not None
    through_pluggy = pm.hook.stepup_check(**_check_args())
    assert direct == through_pluggy  # None answers dropped, the rest in call order
    assert [v.reason for v in direct] == ["first", "scope_policy"]
    assert direct_order == calls == ["eager", "silent", "first"]


def test_a_plugin_registered_or_unregistered_later_is_seen_at_once():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    calls: list[str] = []
    plugins.call_hook(pm, "stepup_check", **_check_args())
    late = _Voter("late", None, calls)
    pm.register(late, name="late")
    plugins.call_hook(pm, "stepup_check", **_check_args())
    assert calls == ["late"]
    pm.unregister(late)
    plugins.call_hook(pm, "stepup_check", **_check_args())
    assert calls == ["late"]


def test_a_wrapper_or_a_monitor_gets_pluggy_s_own_dispatch():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    seen: list[str] = []

    class Wrapper:
        @plugins.hookimpl(wrapper=True)
        def stepup_check(self, principal, scope, policy):
            seen.append("wrapped")
            return (yield)

    wrapper = Wrapper()
    pm.register(wrapper, name="wrapper")
    assert plugins.direct_impls(pm, "stepup_check") is None
    assert plugins.call_hook(pm, "stepup_check", **_check_args())
    assert seen == ["wrapped"]
    pm.unregister(wrapper)
    assert plugins.direct_impls(pm, "stepup_check") is not None

    stop = pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *a: None)
    assert plugins.direct_impls(pm, "stepup_check") is None
    plugins.call_hook(pm, "stepup_check", **_check_args())
    from stepup_core.models import AuditEvent

    list(plugins.call_each_plugin(pm, "stepup_event", event=AuditEvent("grant_used", "success", 0.0), service=None))
    assert seen[1:] == ["stepup_check", "stepup_event", "stepup_event"]  # once per plugin
    stop()
    stop()  # undoing twice counts once
    assert pm.monitors == 0 and plugins.direct_impls(pm, "stepup_check") is not None


def test_trace_plugins_shows_the_request_path_hooks_too(monkeypatch, capsys):
    monkeypatch.setenv("STEPUP_TRACE_PLUGINS", "1")
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    plugins.call_hook(pm, "stepup_check", **_check_args())
    assert "stepup_check:" in capsys.readouterr().err


def test_call_each_plugin_directly_keeps_one_failure_from_silencing_the_rest():
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    got: list[str] = []

    class Failing:
        @plugins.hookimpl
        def stepup_operation(self, operation):
            raise RuntimeError("broken sink")

    class Working:
        @plugins.hookimpl
        def stepup_operation(self, operation):
            got.append(operation)
            return "answer"

    pm.register(Failing(), name="failing")
    pm.register(Working(), name="working")
    assert plugins.direct_impls(pm, "stepup_operation") is not None
    answers = dict(plugins.call_each_plugin(pm, "stepup_operation", operation="op"))
    assert isinstance(answers["failing"], RuntimeError) and answers["working"] == "answer"
    assert got == ["op"]
