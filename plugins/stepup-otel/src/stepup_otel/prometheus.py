"""The Prometheus scrape endpoint: stepup's metrics in the text format at ``/metrics``.

OpenTelemetry's Prometheus exporter (a metric reader) feeds a ``prometheus_client`` registry
of its own, served by a small aiohttp listener on its own interface and port, apart from the
stepup routes: metrics are for the operator, not for the callers of the API.
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class PrometheusEndpoint:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        self.url = f"http://{shown}:{port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self.meter_provider.shutdown()
