"""stepup-otel: OpenTelemetry metrics and traces for stepup, with an optional Prometheus scrape
endpoint. ``StepUpTelemetry`` (in :mod:`stepup_otel.telemetry`) is the plugin; the entry point
registers one that reports to the global OpenTelemetry providers."""

from __future__ import annotations

__version__ = "0.1.0"
