"""One test per hook, through the host code that calls it (the meta-test in test_docs.py
requires a ``test_hook_<name>`` for every hook)."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from stepup_core import errors, hookimpl
from stepup_core.client.registry import client_methods
from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.models import (
    AuditEvent,
    CodeDelivery,
    Credential,
    CredentialFormat,
    Factor,
    Principal,
    StepUpVote,
)
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.store import open_store
from stepup_core.store.memory import MemoryStore
from stepup_core.testing.methods import KeyClientMethod, PinVerifier, ThrowawayPlugin

P = Principal("u", "s")


@pytest.fixture
def pm():
    return get_plugin_manager(load_entrypoints=False)


async def make_service(pm, **config: Any) -> StepUpService:
    return await StepUpService.create(
        config_from_mapping({"store": "memory:", "secret_key": "ab" * 32, **config}), pm=pm, clock=ManualClock()
    )


async def test_hook_stepup_register_stores(pm):
    opened: list[str] = []

    class Scratch:
        @hookimpl
        def stepup_register_stores(self, register):
            async def factory(url, clock):
                opened.append(url)
                return MemoryStore(clock=clock)

            register("scratch", factory)

    pm.register(Scratch(), name="scratch")
    store = await open_store("scratch:anything", pm)
    assert isinstance(store, MemoryStore) and opened == ["scratch:anything"]

    class Clash:
        @hookimpl
        def stepup_register_stores(self, register):
            register("memory", lambda url, clock: None)

    pm.register(Clash(), name="clash")
    with pytest.raises(errors.PluginError, match="'memory' is registered by both"):
        await open_store("memory:", pm)
    pm.unregister(name="clash")
    with pytest.raises(errors.ConfigError, match="no store backend for 'nosuch'"):
        await open_store("nosuch://x", pm)


@attrs.frozen
class PinSettings:
    digits: int = 6


class ConfiguredPins:
    """Reads its own ``[plugins.pin]`` table, as a real method plugin does."""

    @hookimpl
    def stepup_register_verifiers(self, register, config):
        settings = config.plugin_section("pin", PinSettings)
        register(PinVerifier(name="pin", challenge_ttl=float(settings.digits * 10)))


async def test_hook_stepup_register_verifiers(pm):
    pm.register(ConfiguredPins(), name="pins")
    service = await make_service(pm, plugins={"pin": {"digits": 8}})
    assert [m.name for m in service.methods()] == ["pin"]
    assert service.verifiers["pin"].challenge_ttl == 80.0
    assert service.methods()[0].plugin == "pins"
    with pytest.raises(errors.ConfigError, match=r"plugins\.pin\.digits"):
        await make_service(pm, plugins={"pin": {"digits": "eight"}})

    pm.register(ThrowawayPlugin(verifiers=[PinVerifier(name="pin")]), name="twin")
    with pytest.raises(errors.PluginError, match="'pin' is registered by both"):
        await make_service(pm)


async def test_hook_stepup_check(pm):
    seen: list[tuple[str, str]] = []

    class Risk:
        @hookimpl
        def stepup_check(self, principal, scope, policy):
            seen.append((principal.user_id, scope))
            return StepUpVote(required=True, reason="new_device") if scope == "user:update" else None

    pm.register(Risk(), name="risk")
    service = await make_service(pm, scopes={"user:update": {"required": False}})
    result = await service.check(P, "user:update")
    assert result.is_required and result.reasons == ("new_device",)
    assert (await service.check(P, "credential:update")).is_required  # Risk abstains: the policy votes
    assert seen == [("u", "user:update"), ("u", "credential:update")]


async def test_a_vote_registered_or_removed_later_gates_protected_actions_at_once(pm):
    """While the built-in vote is the only one the gate decides from the policy alone; a
    plugin's vote counts from the next request after it is registered, and stops after it
    is removed."""
    service = await make_service(pm, scopes={"user:update": {"required": False}})
    issued = await service.tokens.mint(P, ["credential:update"], method="benchmark", ttl=600, single_use=False)
    token = issued.elevated_access_token
    assert await service.require_scope(P, "user:update", None) is None  # not guarded
    assert (await service.require_scope(P, "credential:update", token)).method == "benchmark"

    class FreshOnly:
        @hookimpl
        def stepup_check(self, principal, scope, policy):
            return StepUpVote(required=True, reason="risk", accept_existing_token=False)

    fresh_only = FreshOnly()
    pm.register(fresh_only, name="fresh-only")
    with pytest.raises(errors.StepUpRequired) as refused:
        await service.require_scope(P, "credential:update", token)
    assert refused.value.check["reasons"] == ["risk", "scope_policy"]
    with pytest.raises(errors.StepUpRequired):
        await service.require_scope(P, "user:update", None)  # the plugin guards it now
    checked = await service.check(P, "credential:update", token)
    assert checked.is_required and checked.reasons == ("risk", "scope_policy")
    pm.unregister(fresh_only)
    assert await service.require_scope(P, "user:update", None) is None
    assert not (await service.check(P, "credential:update", token)).is_required
    assert (await service.require_scope(P, "credential:update", token)).method == "benchmark"


async def test_hook_stepup_user_credentials(pm):
    class App:
        @hookimpl
        async def stepup_user_credentials(self, principal):
            return [Credential(id="app-pin", user_id="ignored", method="", format=CredentialFormat.CUSTOM,
                               factor=Factor.MFA, created_at=1.0, data={"pinHash": "x"})]

    pm.register(ThrowawayPlugin(verifiers=[PinVerifier(name="pin", factor=Factor.MFA,
                                                        formats=(CredentialFormat.CUSTOM,))]), name="pins")
    pm.register(App(), name="app")
    service = await make_service(pm)
    views = await service.list_credentials(P)
    assert [(v.id, v.method) for v in views] == [("app-pin", "pin")]
    result = await service.check(P, "user:update")
    assert result.route.value == "mfa" and result.default_credential_id == "app-pin"


async def test_hook_stepup_deliver_code(pm):
    sent: list[CodeDelivery] = []

    class Pager:
        name = "pager"

        async def send(self, delivery):
            sent.append(delivery)

    class PagerPlugin:
        @hookimpl
        def stepup_deliver_code(self, delivery, config):
            return Pager() if delivery.channel == "sms" else None

    class Broken:
        name = "broken"

        async def send(self, delivery):
            raise ConnectionError("gateway down")

    pm.register(PagerPlugin(), name="pager")
    service = await make_service(pm)
    sms = CodeDelivery(channel="sms", address="+15550100", code="123456", purpose="stepUp", expires_at=1.0, user_id="u")
    await service.deliver_code(sms)
    assert sent == [sms]
    email = CodeDelivery(channel="email", address="a@example.com", code="1", purpose="stepUp", expires_at=1.0,
                         user_id="u")
    await service.deliver_code(email)  # the console fallback answers
    assert sent == [sms]

    class BrokenPlugin:
        @hookimpl(tryfirst=True)
        def stepup_deliver_code(self, delivery, config):
            return Broken()

    pm.register(BrokenPlugin(), name="broken")
    with pytest.raises(errors.DeliveryFailed, match="gateway down"):
        await service.deliver_code(sms)


async def test_hook_stepup_event(pm, caplog):
    received: list[AuditEvent] = []

    class Sink:
        @hookimpl
        async def stepup_event(self, event):
            received.append(event)

    class Crashing:
        @hookimpl
        def stepup_event(self, event):
            raise RuntimeError("audit sink down")

    pm.register(Sink(), name="sink")
    pm.register(Crashing(), name="crashing")
    service = await make_service(pm)
    caplog.set_level(logging.ERROR, logger="stepup")
    assert await service.revoke_grants(P) == 0
    assert [e.type for e in received] == ["grants_revoked"]
    assert "audit sink down" in caplog.text  # logged, never blocking


async def test_stepup_event_reaches_plugins_registered_or_removed_later(pm):
    """The callers narrowed to each plugin are reused between events: a plugin registered after
    the first event hears the next ones exactly once, and one unregistered hears no more."""
    heard: list[tuple[str, str]] = []

    class Sink:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def stepup_event(self, event):
            heard.append((self.name, event.type))

    first = Sink("first")
    pm.register(first, name="first")
    service = await make_service(pm)
    await service.revoke_grants(P)
    pm.register(Sink("second"), name="second")
    await service.revoke_grants(P)
    pm.unregister(first)
    await service.revoke_grants(P)
    assert heard == [("first", "grants_revoked")] * 2 + [("second", "grants_revoked")] * 2


def test_hook_stepup_register_client_methods(pm):
    pm.register(ThrowawayPlugin(client_methods=[KeyClientMethod()]), name="keys")
    methods = client_methods(pm)
    assert set(methods) == {"key"} and methods["key"].package == "stepup-testing"

    pm.register(ThrowawayPlugin(client_methods=[KeyClientMethod()]), name="twin")
    with pytest.raises(errors.PluginError, match="'key' is registered by both 'keys' and 'twin'"):
        client_methods(pm)
