"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``<webhook-id>.<webhook-timestamp>.<body>``, keyed by the secret after its ``whsec_`` prefix."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
#: The specification's bounds on the key behind a secret.
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ValueError naming what is wrong."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_' followed by base64 (make one with new_secret())")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part of a webhook secret after 'whsec_' must be base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes, this one {len(key)}"
        )
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value for one attempt."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
