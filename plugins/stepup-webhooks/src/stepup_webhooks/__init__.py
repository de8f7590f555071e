"""stepup-webhooks: stepup's audit events delivered to HTTPS endpoints, signed as the Standard
Webhooks specification describes, from an outbox kept in the store."""

from __future__ import annotations

__version__ = "0.1.0"
