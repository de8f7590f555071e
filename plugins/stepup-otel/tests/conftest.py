"""A StepUpTelemetry on SDK providers whose metrics and spans the tests read back in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stepup_otel.telemetry import StepUpTelemetry


@attrs.define
class Point:
    name: str
    attributes: dict[str, Any]
    #: A counter's sum, or a histogram's count.
    value: float
    #: A histogram's sum (None for counters).
    total: float | None = None


@attrs.define
class Recorded:
    telemetry: StepUpTelemetry
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter

    def points(self, name: str | None = None) -> list[Point]:
        data = self.reader.get_metrics_data()
        out: list[Point] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if name is not None and metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if hasattr(point, "bucket_counts"):
                            out.append(Point(metric.name, dict(point.attributes or {}), point.count, point.sum))
                        else:
                            out.append(Point(metric.name, dict(point.attributes or {}), point.value))
        return out

    def value(self, name: str, **attributes: Any) -> float:
        """The sum (counter) or count (histogram) of the points of ``name`` matching ``attributes``."""
        return sum(p.value for p in self.points(name) if all(p.attributes.get(k) == v for k, v in attributes.items()))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = StepUpTelemetry(meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield Recorded(telemetry, reader, exporter)
    meter_provider.shutdown()
    tracer_provider.shutdown()
