"""An opt-in pytest plugin with stepup fixtures. Enable it in a ``conftest.py``::

    pytest_plugins = ["stepup_core.testing.pytest_plugin"]

Fixtures (override ``stepup_plugins`` and ``stepup_config`` to shape them):

- ``stepup_plugins``: plugin objects or modules to register (default: none); a
  ``(name, plugin)`` pair registers the plugin under that name;
- ``stepup_config``: a mapping shaped like ``stepup.toml`` (default: memory store, random key);
- ``stepup_clock``: a :class:`~stepup_core.clock.ManualClock`;
- ``stepup_pm``: a fresh plugin manager (no entry points) with ``stepup_plugins`` registered;
- ``stepup_service_factory``: a :class:`ServiceFactory` that builds further services (another
  configuration, plugin manager, store or clock) and closes them after the test;
- ``stepup_service``: a :class:`~stepup_core.service.StepUpService` on the memory store;
- ``stepup_stack``: the service served over HTTP on loopback (:class:`StepUpStack`);
- ``stepup_client``: a :class:`~stepup_core.client.StepUpClient` signed in as ``alice``.

The async fixtures need pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from ..client import StepUpClient
from ..clock import Clock, ManualClock
from ..config import StepUpConfig, config_from_mapping
from ..plugins import StepUpPluginManager, get_plugin_manager
from ..service import StepUpService
from ..store.base import Store
from .stack import StepUpStack


def plugin_manager(plugins: Iterable[object] = ()) -> StepUpPluginManager:
    """A fresh plugin manager (no entry points) with ``plugins`` registered; a ``(name, plugin)``
    pair registers under that name, anything else as ``test-plugin-<index>``."""
    pm = get_plugin_manager(load_entrypoints=False)
    for index, entry in enumerate(plugins):
        if isinstance(entry, tuple):
            name, plugin = entry
        else:
            name, plugin = f"test-plugin-{index}", entry
        pm.register(plugin, name=name)
    return pm


class ServiceFactory:
    """Builds services for a test and closes them when it ends.

    ``await factory(config, plugins=[...])`` or ``await factory(config, pm=pm)``; ``config``
    is a mapping shaped like ``stepup.toml`` (memory store by default) or a ready
    :class:`StepUpConfig`; ``store`` and ``clock`` replace the configured ones.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[StepUpService] = []

    async def __call__(
        self,
        config: Mapping[str, Any] | StepUpConfig | None = None,
        *,
        plugins: Iterable[object] = (),
        pm: StepUpPluginManager | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> StepUpService:
        if not isinstance(config, StepUpConfig):
            config = config_from_mapping({"store": "memory:", **(config or {})})
        service = await StepUpService.create(
            config, pm=pm or plugin_manager(plugins), clock=clock or self.clock, store=store
        )
        self.made.append(service)
        return service

    async def close(self) -> None:
        for service in self.made:
            await service.close()
        self.made.clear()


@pytest.fixture
def stepup_plugins() -> list[object]:
    return []


@pytest.fixture
def stepup_config() -> dict[str, Any]:
    return {"store": "memory:", "secret_key": secrets.token_hex(32)}


@pytest.fixture
def stepup_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def stepup_pm(stepup_plugins: list[object]) -> Iterator[StepUpPluginManager]:
    pm = plugin_manager(stepup_plugins)
    yield pm
    for name, plugin in list(pm.list_name_plugin()):
        if not str(name).startswith("stepup_core."):
            pm.unregister(plugin, name=name)


@pytest_asyncio.fixture
async def stepup_service_factory(stepup_clock: ManualClock) -> AsyncIterator[ServiceFactory]:
    factory = ServiceFactory(stepup_clock)
    yield factory
    await factory.close()


@pytest_asyncio.fixture
async def stepup_service(
    stepup_service_factory: ServiceFactory, stepup_pm: StepUpPluginManager, stepup_config: dict[str, Any]
) -> StepUpService:
    return await stepup_service_factory(stepup_config, pm=stepup_pm)


@pytest_asyncio.fixture
async def stepup_stack(
    stepup_plugins: list[object], stepup_config: dict[str, Any], stepup_clock: ManualClock
) -> AsyncIterator[StepUpStack]:
    async with StepUpStack.start(plugins=stepup_plugins, config=stepup_config, clock=stepup_clock) as stack:
        yield stack


@pytest_asyncio.fixture
async def stepup_client(stepup_stack: StepUpStack) -> AsyncIterator[StepUpClient]:
    async with stepup_stack.client("alice") as client:
        yield client
