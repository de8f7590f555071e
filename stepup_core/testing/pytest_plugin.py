"""An opt-in pytest plugin with stepup fixtures. Enable it in a ``conftest.py``::

    pytest_plugins = ["stepup_core.testing.pytest_plugin"]

Fixtures (override ``stepup_plugins`` and ``stepup_config`` to shape them):

- ``stepup_plugins``: plugin objects or modules to register (default: none);
- ``stepup_config``: a mapping shaped like ``stepup.toml`` (default: memory store, random key);
- ``stepup_clock``: a :class:`~stepup_core.clock.ManualClock`;
- ``stepup_pm``: a fresh plugin manager (no entry points) with ``stepup_plugins`` registered;
- ``stepup_service``: a :class:`~stepup_core.service.StepUpService` on the memory store;
- ``stepup_stack``: the service served over HTTP on loopback (:class:`StepUpStack`);
- ``stepup_client``: a :class:`~stepup_core.client.StepUpClient` signed in as ``alice``.

The async fixtures need pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from ..client import StepUpClient
from ..clock import ManualClock
from ..config import config_from_mapping
from ..plugins import StepUpPluginManager, get_plugin_manager
from ..service import StepUpService
from .stack import StepUpStack


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
    pm = get_plugin_manager(load_entrypoints=False)
    names = []
    for index, plugin in enumerate(stepup_plugins):
        name = f"test-plugin-{index}"
        pm.register(plugin, name=name)
        names.append(name)
    yield pm
    for name in names:
        pm.unregister(name=name)


@pytest_asyncio.fixture
async def stepup_service(
    stepup_pm: StepUpPluginManager, stepup_config: dict[str, Any], stepup_clock: ManualClock
) -> AsyncIterator[StepUpService]:
    service = await StepUpService.create(config_from_mapping(stepup_config), pm=stepup_pm, clock=stepup_clock)
    yield service
    await service.close()


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
