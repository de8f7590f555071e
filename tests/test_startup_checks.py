"""Configuration mistakes stop the start, with an error naming them, and the start closes what it
opened when it fails: ``${NAME}`` expansion, ``[plugins.*]`` tables no plugin reads, scope
policies naming methods that are not installed, and ``StepUpService.create``'s cleanup."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from stepup_core import errors
from stepup_core.clock import Clock, ManualClock
from stepup_core.config import config_from_mapping, expand_env, load_config
from stepup_core.hookspecs import hookimpl
from stepup_core.models import Factor
from stepup_core.plugins import PluginLoadFailure, StepUpPluginManager, get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.store.base import Store, StoreFactory
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin

KEY = secrets.token_hex(32)


# --- ${NAME} expansion -------------------------------------------------------------------------


def test_a_reference_inside_a_longer_string_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    config = config_from_mapping({"store": "sqlite:${STATE_DIR}/stepup.sqlite3", "app_name": "${STATE_DIR}!"})
    assert config.store == f"sqlite:{tmp_path}/state/stepup.sqlite3"
    assert config.app_name == f"{tmp_path}/state!"


async def test_the_store_lands_where_the_variable_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "stepup.toml"
    config_file.write_text(f'store = "sqlite:${{STATE_DIR}}/stepup.sqlite3"\nsecret_key = "{KEY}"\n')
    service = await StepUpService.create(load_config(config_file), pm=get_plugin_manager(load_entrypoints=False))
    await service.close()
    assert (tmp_path / "state" / "stepup.sqlite3").is_file()
    assert not any("$" in p.name for p in tmp_path.rglob("*")), "a literal ${STATE_DIR} folder was created"


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("Cost: $$5", "Cost: $5"),
        ("$${HOME}", "${HOME}"),
        ("$$$$", "$$"),
        ("pa$word", "pa$word"),
        ("ends with $", "ends with $"),
        ("$1 and $x", "$1 and $x"),
        ("a ${REF} b $${REF} c", "a value b ${REF} c"),
        ("${REF}${REF}", "valuevalue"),
    ],
)
def test_dollar_dollar_is_a_literal_dollar(written: str, expanded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REF", "value")
    assert expand_env(written) == expanded
    assert config_from_mapping({"app_name": written}).app_name == expanded


def test_a_variable_value_is_never_expanded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTER", "${INNER}$$")
    monkeypatch.delenv("INNER", raising=False)
    assert config_from_mapping({"app_name": "${OUTER}"}).app_name == "${INNER}$$"


@pytest.mark.parametrize("written", ["${", "${UNCLOSED", "${}", "${1ABC}", "${A-B}", "x ${ SPACED }"])
def test_a_malformed_reference_is_an_error_naming_the_key(written: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config_from_mapping({"server": {"public_url": written}})
    message = str(caught.value)
    assert message.startswith("server.public_url: ")
    assert "$$ for a literal $" in message


def test_an_unset_variable_is_an_error_naming_it_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    with pytest.raises(errors.ConfigError, match=r"^store refers to \$\{NOPE_UNSET\}, but NOPE_UNSET is not set$"):
        config_from_mapping({"store": "sqlite:${NOPE_UNSET}/x.sqlite3"})
    with pytest.raises(errors.ConfigError, match=r"^plugins\.otp\.smtp\.password refers to \$\{NOPE_UNSET\}"):
        config_from_mapping({"plugins": {"otp": {"smtp": {"password": "x${NOPE_UNSET}"}}}})
    with pytest.raises(errors.ConfigError, match=r"^declared_scopes\[1\] refers to \$\{NOPE_UNSET\}"):
        config_from_mapping({"declared_scopes": ["app:one", "${NOPE_UNSET}"]})


@attrs.frozen
class TokenSettings:
    token: str = ""


def test_plugin_tables_are_expanded_once_like_every_other_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_TOKEN", "t0ken")
    config = config_from_mapping({"plugins": {"sms": {"token": "Bearer ${SMS_TOKEN} $${SMS_TOKEN}"}}})
    assert config.plugin_section("sms", TokenSettings).token == "Bearer t0ken ${SMS_TOKEN}"


# --- checks against the installed plugins ------------------------------------------------------


class RecordingStore(MemoryStore):
    """The memory store, remembering whether it was closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


@attrs.define(eq=False)
class ProbeStores:
    """Registers the ``probe:`` store scheme and keeps every store it opened."""

    opened: list[RecordingStore] = attrs.field(factory=list)

    @hookimpl
    def stepup_register_stores(self, register: Callable[[str, StoreFactory], None]) -> None:
        async def open_probe(url: str, clock: Clock) -> Store:
            store = RecordingStore(clock=clock)
            self.opened.append(store)
            return store

        register("probe", open_probe)


@pytest.fixture
def stores() -> ProbeStores:
    return ProbeStores()


@pytest.fixture
def probe_pm(stores: ProbeStores) -> StepUpPluginManager:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stores, name="probe-stores")
    pm.register(ThrowawayPlugin([PinVerifier(factor=Factor.MFA)]), name="throwaway")
    return pm


async def start(pm: StepUpPluginManager, **config: Any) -> StepUpService:
    return await StepUpService.create(
        config_from_mapping({"store": "probe:", "secret_key": KEY, **config}), pm=pm, clock=ManualClock()
    )


async def test_a_table_for_a_plugin_that_is_not_installed_stops_the_start(
    probe_pm: StepUpPluginManager, stores: ProbeStores
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        await start(probe_pm, plugins={"totpp": {"digits": 6}})
    assert str(caught.value) == (
        "[plugins.totpp] configures a plugin that is not installed; installed plugins: notifications, probe-stores, "
        "throwaway "
        "(check the name, or install the plugin)"
    )
    [store] = stores.opened
    assert store.closed, "the store opened before the check was left open"


async def test_a_table_is_accepted_for_an_installed_plugin_or_method(probe_pm: StepUpPluginManager) -> None:
    # "pin" is a method name (a plugin registered under another name provides it); "throwaway"
    # the plugin's own registered name.
    service = await start(probe_pm, plugins={"pin": {}, "throwaway": {}})
    await service.close()


async def test_a_plugin_registered_under_another_name_owns_its_entry_point_table(
    probe_pm: StepUpPluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests register a plugin object as ``stack-plugin-0``; its package's entry point names the table."""
    from importlib.metadata import EntryPoint

    import stepup_core.plugins

    acme = EntryPoint(name="acme", value="acme_stepup.plugin", group="stepup")
    monkeypatch.setattr(stepup_core.plugins, "_stepup_entry_points", lambda: [acme])
    telemetry = type("Telemetry", (), {"__module__": "acme_stepup.telemetry"})()
    probe_pm.register(telemetry, name="stack-plugin-0")
    service = await start(probe_pm, plugins={"acme": {"on": True}})
    await service.close()
    with pytest.raises(errors.ConfigError, match=r"\[plugins\.acmee\]"):
        await start(probe_pm, plugins={"acmee": {}})


async def test_the_built_in_notifications_table_is_accepted(probe_pm: StepUpPluginManager) -> None:
    service = await start(probe_pm, plugins={"notifications": {"enabled": False}})
    await service.close()


async def test_a_table_for_a_switched_off_plugin_is_accepted(probe_pm: StepUpPluginManager) -> None:
    probe_pm.set_blocked("totp")  # what STEPUP_DISABLE_PLUGINS=totp does
    service = await start(probe_pm, plugins={"totp": {"digits": 6}})
    await service.close()


async def test_a_table_for_a_plugin_that_failed_to_load_names_the_load_error(
    probe_pm: StepUpPluginManager, stores: ProbeStores
) -> None:
    probe_pm.load_failures.append(PluginLoadFailure(name="wallet", error="ImportError: no module named eth_account"))
    with pytest.raises(errors.ConfigError, match=r"plugin 'wallet', which failed to load: ImportError: no module"):
        await start(probe_pm, plugins={"wallet": {}})
    assert stores.opened[0].closed


async def test_a_policy_naming_a_method_that_is_not_installed_stops_the_start(
    probe_pm: StepUpPluginManager, stores: ProbeStores
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        await start(probe_pm, scopes={"billing:refund": {"allowed_methods": ["pin", "passkey"]}})
    assert str(caught.value) == (
        "scopes.billing:refund.allowed_methods names passkey, which is not installed; installed methods: pin"
    )
    assert stores.opened[0].closed


async def test_a_policy_naming_installed_methods_starts(probe_pm: StepUpPluginManager) -> None:
    service = await start(probe_pm, scopes={"billing:refund": {"allowed_methods": ["pin"]}})
    assert service.policies.policy_for("billing:refund").allowed_methods == ("pin",)
    await service.close()


async def test_a_scope_no_installed_method_may_grant_is_logged(
    probe_pm: StepUpPluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    probe_pm.register(ThrowawayPlugin([PinVerifier(name="code", factor=Factor.REAUTH)]), name="more")
    with caplog.at_level(logging.WARNING, logger="stepup"):
        service = await start(probe_pm, scopes={"org:admin": {"allowed_methods": ["code"], "min_factor": "mfa"}})
    await service.close()
    assert "no installed method may step up for scope org:admin" in caplog.text


# --- StepUpService.create cleans up --------------------------------------------------------------


class BrokenRegistration:
    @hookimpl
    def stepup_register_verifiers(self, register: Any, config: Any) -> None:
        raise errors.ConfigError("plugins.broken.size must be positive")


async def test_a_failing_method_registration_closes_the_store(
    probe_pm: StepUpPluginManager, stores: ProbeStores
) -> None:
    probe_pm.register(BrokenRegistration(), name="broken")
    with pytest.raises(errors.ConfigError, match=r"plugins\.broken\.size"):
        await start(probe_pm)
    assert stores.opened[0].closed


async def test_a_store_passed_in_stays_open_for_its_owner(probe_pm: StepUpPluginManager) -> None:
    mine = RecordingStore(clock=ManualClock())
    with pytest.raises(errors.ConfigError):
        await StepUpService.create(
            config_from_mapping({"secret_key": KEY, "plugins": {"nosuch": {}}}), pm=probe_pm, store=mine
        )
    assert not mine.closed
    await mine.close()


async def test_a_sqlite_store_is_closed_after_a_failed_start(tmp_path: Path) -> None:
    """The SQLite store's worker thread is what kept ``stepup serve`` alive after the error."""
    import threading

    before = set(threading.enumerate())
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(BrokenRegistration(), name="broken")
    config = config_from_mapping({"store": f"sqlite:{tmp_path / 's.sqlite3'}", "secret_key": KEY})
    with pytest.raises(errors.ConfigError, match=r"plugins\.broken\.size") as caught:
        await StepUpService.create(config, pm=pm)
    # ``caught`` keeps the traceback (and so the store) alive, as the error on its way to the
    # command's handler did. The event loop's own executor threads idle until the loop closes;
    # any other new thread (the SQLite connection's) must end.
    left = [t for t in threading.enumerate() if t not in before and not t.name.startswith("asyncio_")]
    for thread in left:
        thread.join(timeout=5)
    assert not [t for t in left if t.is_alive()], f"threads left running: {left}"
    assert caught.value.code == "config_error"
