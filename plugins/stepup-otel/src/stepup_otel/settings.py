"""``[plugins.otel]`` in ``stepup.toml``: the Prometheus scrape endpoint (off by default)."""

from __future__ import annotations

from typing import Any

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.errors import ConfigError

PLUGIN_NAME = "otel"


def _port(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value < 65536:
        raise ValueError(f"{attribute.name} must be between 0 and 65535, got {value}")


@attrs.frozen
class OtelSettings:
    """``[plugins.otel]``."""

    #: Serve stepup's metrics in the Prometheus text format at ``http://host:port/metrics``.
    prometheus: bool = False
    #: The scrape endpoint's interface. Loopback by default: metrics are not for the public.
    prometheus_host: str = "127.0.0.1"
    #: 9464 is the port OpenTelemetry's Prometheus exporters use; 0 picks a free one.
    prometheus_port: int = attrs.field(default=9464, validator=_port)


def load_settings(config: StepUpConfig) -> OtelSettings:
    settings = config.plugin_section(PLUGIN_NAME, OtelSettings)
    if not isinstance(settings, OtelSettings):  # pragma: no cover - plugin_section guarantees it
        raise ConfigError("plugins.otel could not be read")
    return settings
