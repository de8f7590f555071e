"""Secret-key rotation: the ledger of keys stored data still needs, and ``stepup keys rotate``.

Every sealed value and keyed hash names the key it was made with (see
:class:`~stepup_core.crypto.SecretKeys`). The store keeps a small ledger (``meta:secret-keys``)
of the key ids that stored records may still need, each with the reason. When a service starts,
a key the ledger names but the configuration lacks is refused with
:class:`~stepup_core.crypto.SecretKeyMissing`: removing an old key before rotating away from it
would make TOTP secrets unreadable and codes unverifiable.

``stepup keys rotate`` (:func:`rotate_keys`) walks every stored credential: methods with a
``rekey`` hook re-seal their secrets under the current key (TOTP device secrets); what cannot be
re-keyed (a recovery code's keyed hash needs the code, which the server never keeps) keeps its
key in the ledger with the reason, and is re-keyed when the user generates new codes. The
rotation then rewrites the ledger, so the keys nothing needs any more can be removed.

Pending challenges may hold values made with an older key (a TOTP enrolment's secret, an OTP
code's hash); they live minutes, so the report says when the last of them expires instead of
rewriting them. Development mode (no secret key) keeps no ledger.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from .credentials import CREDENTIAL_KEY_PREFIX
from .crypto import LEGACY_KEY_ID, SecretKeyMissing, SecretKeys, key_id_of
from .errors import ConfigError, StoreUnavailable
from .models import AuditEvent, Credential
from .serialization import loads
from .store.base import Store, make_key
from .store.migrations import ScanningStore
from .verifier import Rekeyed

if TYPE_CHECKING:
    from .service import StepUpService

__all__ = [
    "LEDGER_KEY",
    "KeyLedger",
    "RotationReport",
    "check_key_ledger",
    "describe_need",
    "read_key_ledger",
    "rotate_keys",
]

log = logging.getLogger("stepup")

LEDGER_KEY = "meta:secret-keys"
_CHALLENGE_PREFIX = make_key("challenge") + ":"
_CURRENT = "the current key"
_LEGACY_REASON = "may protect values written before key ids (run `stepup keys rotate`)"


@attrs.frozen
class KeyLedger:
    """Key ids stored data may still need (id -> reason), and which ids may have written values
    from before key ids existed (``legacy``)."""

    in_use: dict[str, str] = attrs.field(factory=dict)
    legacy: tuple[str, ...] = ()


def _parse_ledger(raw: str) -> KeyLedger:
    data = json.loads(raw)
    return KeyLedger(in_use=dict(data.get("inUse", {})), legacy=tuple(data.get("legacy", ())))


def _dump_ledger(ledger: KeyLedger) -> str:
    return json.dumps({"inUse": ledger.in_use, "legacy": list(ledger.legacy)}, sort_keys=True)


async def read_key_ledger(store: Store) -> KeyLedger | None:
    raw = await store.get(LEDGER_KEY)
    return None if raw is None else _parse_ledger(raw)


def describe_need(kid: str, reason: str, current_id: str) -> str:
    """Why stored data needs ``kid``, as an operator should read it today."""
    if reason == _CURRENT and kid != current_id:
        return "values written while it was the current key (run `stepup keys rotate`)"
    return reason


def _missing_message(missing: dict[str, str]) -> str:
    named = "; ".join(f"{kid}: {describe_need(kid, reason, '')}" for kid, reason in sorted(missing.items()))
    return (
        f"secret key {', '.join(sorted(missing))} is not configured but stored data still needs it ({named}). "
        "Keep it in secret_keys after the current key, run `stepup keys rotate`, and remove it only when "
        "the rotation reports it unused"
    )


async def check_key_ledger(store: Store, keys: SecretKeys) -> KeyLedger | None:
    """At start: refuse a configuration that lacks a key stored data needs; record the current key.

    A store without a ledger (new, or written before key ids) gets one naming every configured
    key, since values from before key ids may have been made with any of them. When the store
    cannot be reached the check is skipped with a warning (the service still starts and answers
    "store unavailable" until it is back)."""
    try:
        for _ in range(5):
            raw = await store.get(LEDGER_KEY)
            if raw is None:
                ledger = KeyLedger(
                    in_use={kid: _CURRENT if kid == keys.current_id else _LEGACY_REASON for kid in keys.key_ids},
                    legacy=keys.key_ids,
                )
                if await store.add(LEDGER_KEY, _dump_ledger(ledger), ttl=None):
                    return ledger
                continue
            ledger = _parse_ledger(raw)
            missing = {kid: reason for kid, reason in ledger.in_use.items() if kid not in keys.key_ids}
            if missing:
                raise SecretKeyMissing(_missing_message(missing), keyIds=sorted(missing))
            if keys.current_id in ledger.in_use:
                return ledger
            updated = attrs.evolve(ledger, in_use={**ledger.in_use, keys.current_id: _CURRENT})
            if await store.compare_and_set(LEDGER_KEY, raw, _dump_ledger(updated), ttl=None):
                return updated
        raise StoreUnavailable("the secret-key ledger kept changing under this instance; try again")
    except StoreUnavailable as exc:
        log.warning("stepup: could not check which secret keys stored data needs: %s", exc)
        return None


# --- rotation ----------------------------------------------------------------------------------


@attrs.define
class RotationReport:
    """What ``stepup keys rotate`` did."""

    current: str
    configured: tuple[str, ...]
    credentials: int = 0
    #: Credentials whose secrets were re-sealed under the current key, by method.
    resealed: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Credentials that needed no change (nothing sealed, or already under the current key).
    unchanged: int = 0
    #: Key id -> reason -> number of credentials that still need that key.
    still_used: dict[str, collections.Counter[str]] = attrs.field(factory=dict)
    #: Pending challenges holding values made with an older key, and when the last expires.
    pending_challenges: int = 0
    pending_expire_at: float | None = None
    ledger: KeyLedger = attrs.field(factory=KeyLedger)

    @property
    def removable(self) -> list[str]:
        return [kid for kid in self.configured if kid not in self.ledger.in_use]

    def lines(self) -> Iterator[str]:
        yield f"current key: {self.current} (first of {len(self.configured)} configured: {', '.join(self.configured)})"
        yield f"credentials scanned: {self.credentials}"
        total = sum(self.resealed.values())
        by_method = ", ".join(f"{m}: {n}" for m, n in sorted(self.resealed.items()))
        yield f"  re-sealed under {self.current}: {total}" + (f" ({by_method})" if by_method else "")
        yield f"  already current or holding no secret: {self.unchanged}"
        for kid, reasons in sorted(self.still_used.items()):
            for reason, count in sorted(reasons.items()):
                yield f"  cannot be re-keyed, still need key {kid}: {count} ({reason})"
        if self.pending_challenges:
            from datetime import datetime, timezone

            expiry = datetime.fromtimestamp(self.pending_expire_at or 0, tz=timezone.utc)
            until = expiry.strftime("%Y-%m-%d %H:%M:%S")
            yield (
                f"pending challenges holding values under an older key: {self.pending_challenges} "
                f"(the last expires at {until} UTC; keep the old key until then)"
            )
        needed = sorted(self.ledger.in_use.items())
        yield "keys still needed: " + ", ".join(f"{kid} ({reason})" for kid, reason in needed)
        removable = self.removable
        yield "keys you may remove from the configuration now: " + (", ".join(removable) if removable else "none")


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk_strings(item)


def _read_only_rekey(keys: SecretKeys, credential: Credential) -> Rekeyed:
    """For methods without ``rekey``: the older keys their values name, re-keying nothing."""
    still: dict[str, str] = {}
    for text in _walk_strings(credential.data):
        kid = key_id_of(text)
        if kid is not None and kid != keys.current_id:
            still[kid] = f"{credential.method}: the method has no rekey hook"
    return Rekeyed(still_uses=still)


async def _rekey_one(service: StepUpService, raw: str, report: RotationReport) -> None:
    for _ in range(5):
        credential = loads(raw, Credential)
        verifier = service.verifiers.get(credential.method)
        rekey = getattr(verifier, "rekey", None)
        result: Rekeyed = await rekey(service.ctx, credential) if rekey else _read_only_rekey(service.keys, credential)
        if result.data is not None:
            if not await service.credentials.replace(raw, attrs.evolve(credential, data=dict(result.data))):
                # Changed (or deleted) by a running server meanwhile: read it again and redo.
                fresh = await service.credentials.store.get(make_key("cred", credential.user_id, credential.id))
                if fresh is None:
                    return
                raw = fresh
                continue
            report.resealed[credential.method] += 1
        elif not result.still_uses:
            report.unchanged += 1
        for kid, reason in result.still_uses.items():
            report.still_used.setdefault(kid, collections.Counter())[reason] += 1
        return
    raise StoreUnavailable(f"credential {credential.id} kept changing during the rotation; run it again")


async def _pending_challenges(service: StepUpService, scanner: ScanningStore, report: RotationReport) -> None:
    current = service.keys.current_id
    async for _key, raw in scanner.scan(_CHALLENGE_PREFIX):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        old = False
        for text in _walk_strings(record.get("state", {})):
            kid = key_id_of(text)
            if (kid is not None and kid != current) or (text.startswith("aesgcm:") and kid is None):
                old = True
        if old:
            report.pending_challenges += 1
            expires = float(record.get("expiresAt", 0.0))
            report.pending_expire_at = max(report.pending_expire_at or 0.0, expires)


async def rotate_keys(service: StepUpService, *, operator: str) -> RotationReport:
    """Re-seal every stored credential's secrets under the current key, record which older keys
    are still needed and why, and emit a ``secret_keys_rotated`` audit event naming ``operator``."""
    store = service.store
    keys = service.keys
    if not keys.encrypting:
        raise ConfigError("no secret key is configured (development mode): set secret_key or secret_keys first")
    if not isinstance(store, ScanningStore):
        raise ConfigError(
            f"the store {type(store).__name__} cannot list its records (no scan), so it cannot be rotated"
        )
    before = await read_key_ledger(store) or KeyLedger(legacy=keys.key_ids)
    report = RotationReport(current=keys.current_id, configured=keys.key_ids)
    async for _key, raw in store.scan(CREDENTIAL_KEY_PREFIX):
        report.credentials += 1
        await _rekey_one(service, raw, report)
    await _pending_challenges(service, store, report)

    in_use = {keys.current_id: _CURRENT}
    legacy: tuple[str, ...] = ()
    for kid, reasons in report.still_used.items():
        summary = "; ".join(f"{count} x {reason}" for reason, count in sorted(reasons.items()))
        if kid == LEGACY_KEY_ID:
            legacy = before.legacy
            for old in before.legacy:
                in_use.setdefault(old, f"written before key ids: {summary}")
        else:
            in_use.setdefault(kid, summary)
    report.ledger = KeyLedger(in_use=in_use, legacy=legacy)
    await store.put(LEDGER_KEY, _dump_ledger(report.ledger))
    await service.emit(
        AuditEvent(
            type="secret_keys_rotated",
            outcome="success",
            at=service.clock.now(),
            details={
                "operator": operator,
                "currentKeyId": keys.current_id,
                "credentials": report.credentials,
                "resealed": sum(report.resealed.values()),
                "stillNeeded": sorted(in_use),
            },
        )
    )
    return report
