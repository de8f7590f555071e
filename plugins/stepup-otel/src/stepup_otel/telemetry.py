"""``StepUpTelemetry``: stepup's audit events, timings and routes as OpenTelemetry metrics and spans.

Every attribute is built here from an allow-list of fields whose values the server chose (a
method name, a declared scope, an error code, a route template): never a secret, a code, a
token, an address, a user or session id, a query string or an error message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from stepup_core import errors, hookimpl
from stepup_core.config import StepUpConfig
from stepup_core.models import AuditEvent, Operation

from .settings import load_settings

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

    from stepup_core.service import StepUpService

    from .prometheus import PrometheusEndpoint

log = logging.getLogger("stepup.otel")

INSTRUMENTATION_NAME = "stepup"
#: Seconds: from half a millisecond (a guard on a memory store) to ten seconds (a mail relay).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Outcomes of an operation that are decisions, not errors.
DECISIONS = frozenset({"success", "required", "not_required", "granted"})


def _server_fault_codes() -> frozenset[str]:
    found: set[str] = {"error"}
    pending: list[type[errors.StepUpError]] = [errors.StepUpError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "status", 0) >= 500:
            found.add(cls.code)
    return frozenset(found)


SERVER_FAULTS = _server_fault_codes()


def _token_kind(event: AuditEvent) -> str:
    return "single_use" if event.details.get("singleUse") else "time_bound"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class LocalCounter:
    """A monotonic counter summed in a plain dict and reported as an observable counter when a
    reader collects: an ``add`` on the request's path costs a dict update, not an SDK
    measurement. Callers pass attributes in a fixed order (they are keyed by their items)."""

    def __init__(self, meter: metrics.Meter, name: str, unit: str, description: str) -> None:
        self._values: dict[tuple[tuple[str, str], ...], int] = {}
        self._lock = threading.Lock()  # readers collect on their own thread
        meter.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: int, attributes: Mapping[str, str]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            items = list(self._values.items())
        return [metrics.Observation(value, dict(key)) for key, value in items]


class Instruments:
    """The counters and histograms, made once per meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        def counter(name: str, unit: str, description: str) -> LocalCounter:
            return LocalCounter(meter, name, unit, description)

        self.checks = counter(
            "stepup.checks", "{check}", "StepUpChecks answered over HTTP, by scope and whether step-up was required"
        )
        self.challenges = counter("stepup.challenges", "{challenge}", "Challenges begun, by method")
        self.verifications = counter(
            "stepup.verifications", "{verification}", "Verifier answers, by method and outcome (success or error code)"
        )
        self.verification_duration = meter.create_histogram(
            "stepup.verification.duration", "s", "Time a verifier took to check a response, by method and outcome",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.verifier_calls = meter.create_histogram(
            "stepup.verifier.duration", "s",
            "Time of every verifier call (begin, verify, begin_enrollment, complete_enrollment)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.lockouts = counter("stepup.lockouts", "{lockout}", "Users locked out after failures")
        self.attempts_exhausted = counter(
            "stepup.attempts_exhausted", "{challenge}", "Challenges whose attempt budget ran out"
        )
        self.rate_limits = counter(
            "stepup.rate_limits", "{refusal}", "Requests refused by a rate limit, by limit"
        )
        self.grants_issued = counter(
            "stepup.grants.issued", "{grant}", "Elevated access tokens minted, by method and token kind"
        )
        self.grants_used = counter(
            "stepup.grants.used", "{grant}", "Elevated access tokens accepted by a guard, by method and token kind"
        )
        self.grants_refused = counter(
            "stepup.grants.refused", "{grant}", "Presented elevated access tokens refused, by scope and reason"
        )
        self.guard_duration = meter.create_histogram(
            "stepup.guard.duration", "s", "Time of the protected-route guard, by scope and outcome",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.code_deliveries = counter(
            "stepup.code.deliveries", "{message}", "One-time codes handed to a sender, by channel, sender and outcome"
        )
        self.notifications = counter(
            "stepup.notifications", "{message}", "Security notices sent, by kind, channel and outcome"
        )
        self.credential_changes = counter(
            "stepup.credential.changes", "{change}", "Credentials linked, unlinked, updated, by method and change"
        )
        self.http_duration = meter.create_histogram(
            "http.server.request.duration", "s", "Duration of requests to the stepup routes",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )


class StepUpTelemetry:
    """The stepup-otel plugin. Register one on a plugin manager (the entry point registers one
    that uses the global providers); pass providers to report elsewhere (tests pass SDK
    providers with in-memory readers)."""

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._meter_provider = meter_provider
        self._tracer_provider = tracer_provider
        self._instruments: Instruments | None = None
        self._tracer: trace.Tracer | None = None
        self._endpoint: PrometheusEndpoint | None = None
        self._endpoint_users: set[int] = set()
        self._owns_meter_provider = False

    # --- providers -------------------------------------------------------------------------

    @property
    def instruments(self) -> Instruments:
        if self._instruments is None:
            provider = self._meter_provider or metrics.get_meter_provider()
            self._instruments = Instruments(provider.get_meter(INSTRUMENTATION_NAME))
        return self._instruments

    @property
    def tracer(self) -> trace.Tracer:
        if self._tracer is None:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=self._tracer_provider)
        return self._tracer

    # --- lifecycle: the Prometheus endpoint ---------------------------------------------

    @hookimpl
    async def stepup_startup(self, service: StepUpService) -> None:
        settings = load_settings(service.config)
        if not settings.prometheus:
            return
        if self._endpoint is None:
            if self._meter_provider is not None and not self._owns_meter_provider:
                raise errors.ConfigError(
                    "plugins.otel.prometheus is on, but this StepUpTelemetry reports to a meter provider it "
                    "was given: add a PrometheusMetricReader to that provider instead"
                )
            from .prometheus import PrometheusEndpoint

            endpoint = PrometheusEndpoint(settings.prometheus_host, settings.prometheus_port)
            await endpoint.start()
            self._endpoint = endpoint
            self._meter_provider = endpoint.meter_provider
            self._owns_meter_provider = True
            self._instruments = None  # remade on the endpoint's provider
        self._endpoint_users.add(id(service))

    @hookimpl
    async def stepup_shutdown(self, service: StepUpService) -> None:
        self._endpoint_users.discard(id(service))
        if self._endpoint is not None and not self._endpoint_users:
            endpoint, self._endpoint = self._endpoint, None
            await endpoint.stop()

    @property
    def scrape_url(self) -> str | None:
        """``http://host:port/metrics`` while the Prometheus endpoint runs."""
        return self._endpoint.url if self._endpoint is not None else None

    # --- audit events ----------------------------------------------------------------------

    @hookimpl
    def stepup_event(self, event: AuditEvent) -> None:
        self._count(event)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(f"stepup.{event.type}", self._event_attributes(event))

    @staticmethod
    def _event_attributes(event: AuditEvent) -> dict[str, str]:
        attributes = {"stepup.outcome": event.outcome}
        if event.method:
            attributes["stepup.method"] = event.method
        if event.reason:
            attributes["stepup.reason"] = event.reason
        if event.scopes:
            attributes["stepup.scopes"] = " ".join(event.scopes)
        return attributes

    def _count(self, event: AuditEvent) -> None:
        i = self.instruments
        method = _text(event.method)
        kind = event.type
        if kind == "grant_used":
            i.grants_used.add(1, {"method": method, "token": _token_kind(event)})
        elif kind == "grant_issued":
            i.grants_issued.add(1, {"method": method, "token": _token_kind(event)})
        elif kind == "challenge_issued":
            i.challenges.add(1, {"method": method})
        elif kind == "grant_refused":
            scope = event.scopes[0] if event.scopes else ""
            i.grants_refused.add(1, {"scope": scope, "reason": _text(event.reason)})
        elif kind == "locked_out":
            i.lockouts.add(1, {"method": method})
        elif kind == "attempts_exhausted":
            i.attempts_exhausted.add(1, {"method": method})
        elif kind == "rate_limited":
            i.rate_limits.add(1, {"limit": _text(event.details.get("limit"))})
        elif kind in ("code_delivered", "code_delivery_failed"):
            outcome = "success" if kind == "code_delivered" else "failure"
            i.code_deliveries.add(
                1,
                {
                    "channel": _text(event.details.get("channel")),
                    "sender": _text(event.details.get("sender")),
                    "outcome": outcome,
                },
            )
        elif kind in ("notification_sent", "notification_failed"):
            outcome = "success" if kind == "notification_sent" else "failure"
            i.notifications.add(
                1,
                {
                    "kind": _text(event.details.get("kind")),
                    "channel": _text(event.details.get("channel")),
                    "outcome": outcome,
                },
            )
        elif kind in ("credential_enrolled", "credential_deleted", "credential_updated"):
            change = {"credential_enrolled": "reset" if event.details.get("replaced") else "linked",
                      "credential_deleted": "unlinked", "credential_updated": "updated"}[kind]
            i.credential_changes.add(1, {"method": method, "change": change})

    # --- timings -----------------------------------------------------------------------------

    @hookimpl
    def stepup_operation(self, operation: Operation) -> None:
        i = self.instruments
        attributes = {key: str(value) for key, value in operation.attributes.items() if key in ("method", "scope")}
        outcome = operation.outcome
        if operation.name == "check":
            i.checks.add(1, {"scope": attributes.get("scope", ""), "required": str(outcome == "required").lower()})
        elif operation.name == "guard":
            i.guard_duration.record(operation.duration, {"scope": attributes.get("scope", ""), "outcome": outcome})
        elif operation.name.startswith("verifier."):
            call = operation.name.removeprefix("verifier.")
            method = attributes.get("method", "")
            i.verifier_calls.record(operation.duration, {"method": method, "call": call, "outcome": outcome})
            if call == "verify":
                i.verifications.add(1, {"method": method, "outcome": outcome})
                i.verification_duration.record(operation.duration, {"method": method, "outcome": outcome})
        self._span(operation, attributes)

    def _span(self, operation: Operation, attributes: Mapping[str, str]) -> None:
        if operation.name == "guard" and not trace.get_current_span().is_recording():
            # The guard runs in the application's own handler: its span is a child of the
            # application's request span when the application traces its requests, and is not
            # made otherwise (a root span per protected request would be noise; the guard's
            # histogram counts every one).
            return
        start = int(operation.started_at * 1e9)
        span = self.tracer.start_span(
            f"stepup.{operation.name}",
            kind=SpanKind.INTERNAL,
            start_time=start,
            attributes={
                **{f"stepup.{key}": value for key, value in attributes.items()},
                "stepup.outcome": operation.outcome,
            },
        )
        if operation.outcome in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, operation.outcome))
        span.end(end_time=start + int(operation.duration * 1e9))

    # --- the stepup routes -------------------------------------------------------------

    @hookimpl
    def stepup_server_middlewares(self, config: StepUpConfig) -> Iterable[Middleware]:
        return [self.middleware]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A SERVER span per request under the prefix, named by the route's template
        (``POST /stepup/challenges/{id}``): never the path's values, the query or a header."""
        import time

        route = _route_template(request)
        attributes: dict[str, Any] = {"http.request.method": request.method}
        if route is not None:
            attributes["http.route"] = route
        name = f"{request.method} {route}" if route is not None else request.method
        started = time.perf_counter()
        status = 500
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.SERVER, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                response = await handler(request)
                status = response.status
                return response
            except errors.StepUpError as exc:
                status = exc.status
                span.set_attribute("stepup.error.code", exc.code)
                raise
            except web.HTTPException as exc:
                status = exc.status
                raise
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                metric_attributes = {**attributes, "http.response.status_code": status}
                self.instruments.http_duration.record(time.perf_counter() - started, metric_attributes)


def _route_template(request: web.Request) -> str | None:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return None
    canonical = resource.canonical
    return canonical if isinstance(canonical, str) and canonical else None
