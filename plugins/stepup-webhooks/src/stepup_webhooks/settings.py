"""``[plugins.webhooks]`` in ``stepup.toml``: endpoints, event filters, retries.

Endpoints must be ``https://``; plain ``http://`` is accepted only for a loopback host
(``localhost``, ``127.0.0.0/8``, ``::1``): a receiver on the same machine, in development and
tests, where nothing crosses a network. A secret may be written ``${NAME}`` to read it from the
environment.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.errors import ConfigError

from .signing import secret_key

PLUGIN_NAME = "webhooks"
#: Sent unless an endpoint names its own: changes to credentials, lockouts, exhausted budgets,
#: rate limits, grants minted, tokens refused, revocations, failed sends. Not ``grant_used``,
#: which fires on every protected request; ``events = ["*"]`` sends it too.
DEFAULT_EVENTS = (
    "credential_*",
    "locked_out",
    "attempts_exhausted",
    "rate_limited",
    "grant_issued",
    "grant_refused",
    "grants_revoked",
    "code_delivery_failed",
    "notification_failed",
)


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an https:// URL, got {value!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"url must use https:// ({value!r} is plain http to {parts.hostname}); "
            "http is accepted only for a loopback receiver (localhost, 127.0.0.1, ::1)"
        )
    if parts.username or parts.password:
        raise ValueError("url must not carry a user name or password: the signature authenticates stepup")


def _secret(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    secret_key(value)


def _patterns(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("events must name at least one event type or pattern ('*' for all)")


@attrs.frozen
class EndpointSettings:
    """One ``[[plugins.webhooks.endpoints]]`` table."""

    url: str = attrs.field(validator=_url)
    secret: str = attrs.field(repr=False, validator=_secret)
    #: Event types or shell-style patterns (``credential_*``); ``["*"]`` for every event.
    events: tuple[str, ...] = attrs.field(default=DEFAULT_EVENTS, validator=_patterns)
    #: Names the endpoint in the outbox and the logs; defaults to a digest of the URL, so
    #: changing the URL starts a new queue.
    name: str | None = None
    #: Seconds for one delivery attempt.
    timeout: float = attrs.field(default=10.0, validator=_positive)

    @property
    def key(self) -> str:
        return self.name or "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events)


@attrs.frozen
class WebhookSettings:
    """``[plugins.webhooks]``."""

    endpoints: tuple[EndpointSettings, ...] = ()
    #: Attempts per message before it is given up (kept as dead for ``retention``).
    max_attempts: int = attrs.field(default=12, validator=_positive)
    #: Seconds before the first retry; each retry waits twice as long as the one before.
    backoff_base: float = attrs.field(default=5.0, validator=_positive)
    #: The longest wait between two attempts.
    backoff_max: float = attrs.field(default=3600.0, validator=_positive)
    #: Seconds between looks at the outbox besides the wake-ups by new events (messages queued
    #: by another instance sharing the store, retries that came due).
    poll_interval: float = attrs.field(default=5.0, validator=_positive)
    #: Seconds a message (pending or dead) is kept in the store at most.
    retention: float = attrs.field(default=7 * 86_400.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        keys = [e.key for e in self.endpoints]
        if len(set(keys)) != len(keys):
            raise ValueError("two endpoints share a name (or a URL): give each its own")

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base... up to max."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** min(max(attempts - 1, 0), 62)))


def load_settings(config: StepUpConfig) -> WebhookSettings:
    settings = config.plugin_section(PLUGIN_NAME, WebhookSettings)
    if not isinstance(settings, WebhookSettings):  # pragma: no cover - plugin_section guarantees it
        raise ConfigError("plugins.webhooks could not be read")
    return settings
