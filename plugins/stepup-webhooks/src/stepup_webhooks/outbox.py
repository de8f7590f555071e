"""The outbox: every message is written to the store before the event's request goes on, and a
worker delivers it, retrying with exponential backoff, until the endpoint answers 2xx.

A message is one event for one endpoint: ``webhook-id`` (stable across retries and restarts),
the JSON body (fixed when the event happens), an attempt count and when the next attempt is
due. A worker claims a due message by compare-and-set before sending it, with a lease of the
endpoint's timeout plus a margin: several instances sharing a store (Redis) do not send the
same attempt twice, and a message whose sender died mid-attempt comes due again when the lease
runs out. So delivery is at least once: a receiver may see an id again (after a crash, or an
answer lost on the way back) and must deduplicate by ``webhook-id``.

Timestamps here are Unix time from the system clock: the ``webhook-timestamp`` header is checked
by receivers against their own clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import attrs

from stepup_core.crypto import random_id
from stepup_core.models import AuditEvent
from stepup_core.serialization import unstructure
from stepup_core.store.base import Store, make_key

from . import __version__
from .settings import EndpointSettings, WebhookSettings
from .signing import secret_key, sign

if TYPE_CHECKING:
    import aiohttp

    from stepup_core.service import StepUpService

log = logging.getLogger("stepup.webhooks")

OUTBOX_INDEX = make_key("webhook", "outbox")
DEAD_INDEX = make_key("webhook", "dead")
#: Seconds a claim outlives the endpoint's timeout, so a slow answer is never sent twice.
LEASE_MARGIN = 2.0
#: Attempts in flight at once from one worker; each runs on its own, so a slow endpoint holds
#: up none of the others.
CONCURRENCY = 16
USER_AGENT = f"stepup-webhooks/{__version__}"


def outbox_key(endpoint: str, message_id: str) -> str:
    return make_key("webhook", "outbox", endpoint, message_id)


def dead_key(endpoint: str, message_id: str) -> str:
    return make_key("webhook", "dead", endpoint, message_id)


def payload(event: AuditEvent) -> str:
    """The body: ``{"type", "timestamp", "data"}`` as the specification suggests; ``data`` is the
    audit event as the audit log writes it (camelCase)."""
    at = datetime.fromtimestamp(event.at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": event.type, "timestamp": at, "data": unstructure(event)}, separators=(",", ":"), sort_keys=True
    )


@attrs.define
class Record:
    id: str
    endpoint: str
    type: str
    body: str
    created: float
    due: float
    attempts: int = 0
    lease: float | None = None
    last_error: str | None = None

    def dumps(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, raw: str) -> Record:
        return cls(**json.loads(raw))


@attrs.define
class Stats:
    """What this worker did since it started (for logs and tests)."""

    queued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    abandoned: int = 0


class Dispatcher:
    """The outbox and its worker for one service."""

    def __init__(
        self,
        service: StepUpService,
        settings: WebhookSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store: Store = service.store
        self.settings = settings
        self.endpoints = {e.key: e for e in settings.endpoints}
        self.keys = {e.key: secret_key(e.secret) for e in settings.endpoints}
        self.now = clock
        self.stats = Stats()
        self._wanted: dict[str, list[EndpointSettings]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    # --- queueing ---------------------------------------------------------------------------

    def wanted_by(self, event_type: str) -> list[EndpointSettings]:
        found = self._wanted.get(event_type)
        if found is None:
            # The plugin's own events never become webhooks: a failing endpoint cannot feed itself.
            found = [] if event_type.startswith("webhook_") else [
                e for e in self.settings.endpoints if e.wants(event_type)
            ]
            self._wanted[event_type] = found
        return found

    async def enqueue(self, event: AuditEvent) -> None:
        endpoints = self.wanted_by(event.type)
        if not endpoints:
            return
        message_id = random_id("msg")
        body = payload(event)
        now = self.now()
        for endpoint in endpoints:
            record = Record(message_id, endpoint.key, event.type, body, created=now, due=now)
            await self.store.put(
                outbox_key(endpoint.key, message_id), record.dumps(), ttl=self.settings.retention,
                indexes=[OUTBOX_INDEX],
            )
            self.stats.queued += 1
        self._wake.set()

    # --- the worker -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stepup-webhooks")

    async def stop(self, grace: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=grace)
        # An attempt cut short stays claimed in the store and is sent again once its lease ends.
        attempts = list(self._inflight.values())
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _run(self) -> None:
        while True:
            try:
                next_due = await self.deliver_due()
            except Exception:
                log.exception("the webhook outbox could not be read; trying again")
                next_due = None
            wait = self.settings.poll_interval
            if next_due is not None:
                wait = min(wait, max(next_due - self.now(), 0.0))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()

    async def deliver_due(self) -> float | None:
        """Start an attempt for each due message (oldest first, up to :data:`CONCURRENCY` in
        flight); returns when the next one comes due (None: nothing queued)."""
        now = self.now()
        due: list[tuple[str, str, Record]] = []
        next_due: float | None = None
        for key, raw in (await self.store.list_index(OUTBOX_INDEX)).items():
            record = Record.loads(raw)
            if record.endpoint not in self.endpoints or key in self._inflight:
                continue
            ready_at = max(record.due, record.lease or 0.0)
            if ready_at <= now:
                due.append((key, raw, record))
            else:
                next_due = ready_at if next_due is None else min(next_due, ready_at)
        due.sort(key=lambda item: (item[2].created, item[2].id))
        loop = asyncio.get_running_loop()
        for key, raw, record in due[: max(CONCURRENCY - len(self._inflight), 0)]:
            task = loop.create_task(self._attempt(key, raw, record))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        return next_due  # due ones left waiting start when an attempt lands (it wakes the worker)

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    def _remaining(self, record: Record) -> float:
        return max(record.created + self.settings.retention - self.now(), 1.0)

    async def _attempt(self, key: str, raw: str, record: Record) -> None:
        try:
            await self._attempt_once(key, raw, record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s to %s: the attempt failed unexpectedly", record.id, record.endpoint)

    async def _attempt_once(self, key: str, raw: str, record: Record) -> None:
        endpoint = self.endpoints[record.endpoint]
        now = self.now()
        claimed = attrs.evolve(record, attempts=record.attempts + 1, lease=now + endpoint.timeout + LEASE_MARGIN)
        if not await self.store.compare_and_set(
            key, raw, claimed.dumps(), ttl=self._remaining(record), indexes=[OUTBOX_INDEX]
        ):
            return  # another worker has it, or it was delivered meanwhile
        error = await self._post(endpoint, claimed)
        if error is None:
            await self.store.delete(key)
            self.stats.delivered += 1
            return
        self.stats.failed_attempts += 1
        current = await self.store.get(key)
        if current != claimed.dumps():
            return
        if claimed.attempts >= self.settings.max_attempts:
            await self._abandon(key, claimed, error)
            return
        delay = self.settings.backoff(claimed.attempts)
        log.warning(
            "webhook %s to %s failed (attempt %d of %d): %s; next attempt in %.3g s",
            claimed.id, endpoint.key, claimed.attempts, self.settings.max_attempts, error, delay,
        )
        retry = attrs.evolve(claimed, lease=None, due=self.now() + delay, last_error=error)
        await self.store.compare_and_set(
            key, current, retry.dumps(), ttl=self._remaining(record), indexes=[OUTBOX_INDEX]
        )

    async def _abandon(self, key: str, record: Record, error: str) -> None:
        dead = attrs.evolve(record, lease=None, last_error=error)
        await self.store.put(
            dead_key(record.endpoint, record.id), dead.dumps(), ttl=self._remaining(record), indexes=[DEAD_INDEX]
        )
        await self.store.delete(key)
        self.stats.abandoned += 1
        log.error(
            "webhook %s (%s) to %s given up after %d attempts: %s",
            record.id, record.type, record.endpoint, record.attempts, error,
        )
        await self.service.emit(
            AuditEvent(
                type="webhook_abandoned", outcome="failure", at=self.service.clock.now(), reason=error[:100],
                details={"endpoint": record.endpoint, "messageId": record.id, "eventType": record.type},
            )
        )

    async def _post(self, endpoint: EndpointSettings, record: Record) -> str | None:
        """One attempt; None on a 2xx answer, else what went wrong."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        timestamp = int(self.now())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": record.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.keys[endpoint.key], record.id, timestamp, record.body),
        }
        try:
            async with self._session.post(
                endpoint.url,
                data=record.body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return type(exc).__name__

    # --- inspection ---------------------------------------------------------------------------

    async def pending(self) -> list[Record]:
        return [Record.loads(raw) for raw in (await self.store.list_index(OUTBOX_INDEX)).values()]

    async def dead(self) -> list[Record]:
        return [Record.loads(raw) for raw in (await self.store.list_index(DEAD_INDEX)).values()]
