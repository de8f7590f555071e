"""What an operator does for a user: look, unlock, revoke grants, delete a credential, reset MFA.

:class:`Admin` is the one implementation behind ``stepup admin`` (the command line) and the
admin HTTP API (:mod:`stepup_core.server.admin_routes`). It works through the service's public
operations and repositories, and every action, looking included, emits an ``admin_*`` audit
event whose ``details`` name the operator and the channel (``cli`` or ``http``).

Nothing here returns a secret: credentials are shown as their public views, grants without
their token hashes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from .errors import CredentialNotFound, ValidationError
from .models import AuditEvent, Credential, CredentialChangeKind, CredentialView, Factor, Grant, Principal

if TYPE_CHECKING:
    from .service import StepUpService

__all__ = ["Admin", "GrantView", "LockoutState", "MfaReset", "Operator", "UserReport"]

log = logging.getLogger("stepup")

MAX_ID_LENGTH = 256


@attrs.frozen
class Operator:
    """Who acts: a name (``--operator``, the OS user, or the admin API's identify) and how."""

    name: str
    via: str = "cli"


@attrs.frozen
class GrantView:
    """A live grant as an operator sees it: never the token or its hash."""

    session_id: str
    scopes: tuple[str, ...]
    method: str
    issued_at: float
    expires_at: float
    single_use: bool
    credential_id: str | None = None

    @classmethod
    def of(cls, grant: Grant) -> GrantView:
        return cls(
            session_id=grant.session_id,
            scopes=grant.scopes,
            method=grant.method,
            issued_at=grant.issued_at,
            expires_at=grant.expires_at,
            single_use=grant.single_use,
            credential_id=grant.credential_id,
        )


@attrs.frozen
class LockoutState:
    """Failures counted in the current lockout window; ``locked`` once they reach ``limit``."""

    failures: int
    limit: int
    window: float
    locked: bool


@attrs.frozen
class UserReport:
    user_id: str
    credentials: tuple[CredentialView, ...]
    grants: tuple[GrantView, ...]
    lockout: LockoutState


@attrs.frozen
class MfaReset:
    user_id: str
    removed: tuple[CredentialView, ...]
    grants_revoked: int


@attrs.frozen
class Unlocked:
    user_id: str
    #: Failures that were counted (0: the user was not locked out).
    failures_cleared: int


@attrs.frozen
class GrantsRevoked:
    user_id: str
    revoked: int
    session_id: str | None = None


def check_id(value: str, field: str) -> str:
    """An operator-supplied id: non-empty, printable, bounded."""
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise ValidationError(
            f"{field} must be 1 to {MAX_ID_LENGTH} printable characters",
            [{"path": field, "message": f"1 to {MAX_ID_LENGTH} printable characters"}],
        )
    return value


@attrs.define
class Admin:
    service: StepUpService

    async def _audit(self, type: str, operator: Operator, user_id: str, **fields: Any) -> None:
        details = {"operator": operator.name, "via": operator.via, **fields.pop("details", {})}
        at = self.service.clock.now()
        await self.service.emit(
            AuditEvent(type=type, outcome="info", at=at, user_id=user_id, details=details, **fields)
        )

    async def _lockout(self, user_id: str) -> LockoutState:
        limits = self.service.config.limits
        failures = await self.service.limits.failures(user_id)
        return LockoutState(
            failures=failures,
            limit=limits.lockout_failures,
            window=limits.lockout_window,
            locked=failures >= limits.lockout_failures,
        )

    async def show_user(self, user_id: str, operator: Operator) -> UserReport:
        """The user's stored credentials, live grants and lockout state."""
        check_id(user_id, "userId")
        credentials = await self.service.credentials.list_for_user(user_id)
        grants = await self.service.tokens.list_user(user_id)
        report = UserReport(
            user_id=user_id,
            credentials=tuple(c.view() for c in credentials),
            grants=tuple(GrantView.of(g) for g in grants),
            lockout=await self._lockout(user_id),
        )
        await self._audit("admin_user_viewed", operator, user_id)
        return report

    async def unlock(self, user_id: str, operator: Operator) -> Unlocked:
        """Clear the user's lockout window so they can verify again at once."""
        check_id(user_id, "userId")
        failures = await self.service.limits.failures(user_id)
        await self.service.limits.unlock(user_id)
        await self._audit("admin_user_unlocked", operator, user_id, details={"failuresCleared": failures})
        return Unlocked(user_id=user_id, failures_cleared=failures)

    async def revoke_grants(self, user_id: str, operator: Operator, session_id: str | None = None) -> GrantsRevoked:
        """Revoke every live grant of the user, or of one of the user's sessions."""
        check_id(user_id, "userId")
        if session_id is None:
            count = await self.service.tokens.revoke_user(user_id)
        else:
            count = await self.service.tokens.revoke_session(user_id, check_id(session_id, "sessionId"))
        await self._audit("admin_grants_revoked", operator, user_id, session_id=session_id, details={"revoked": count})
        return GrantsRevoked(user_id=user_id, revoked=count, session_id=session_id)

    async def credential(self, user_id: str, credential_id: str) -> Credential:
        check_id(user_id, "userId")
        check_id(credential_id, "credentialId")
        credential = await self.service.credentials.get(user_id, credential_id)
        if credential is None:
            raise CredentialNotFound(
                f"user {user_id!r} has no stored credential {credential_id!r}", credentialId=credential_id
            )
        return credential

    async def _remove(self, credential: Credential) -> bool:
        removed = await self.service.credentials.delete(credential.user_id, credential.id)
        forget = getattr(self.service.verifiers.get(credential.method), "forget", None)
        if forget is not None:
            try:
                await forget(self.service.ctx, credential)
            except Exception:
                log.exception("method %s failed to clean up credential %s", credential.method, credential.id)
        if removed:
            # The user is told, as of any unlink: a reset talked out of support reaches them too.
            await self.service.credential_changed(
                CredentialChangeKind.UNLINKED, Principal(credential.user_id, ""), credential
            )
        return removed

    async def delete_credential(self, user_id: str, credential_id: str, operator: Operator) -> CredentialView:
        """Delete one stored credential (and its method's own records, such as unused codes)."""
        credential = await self.credential(user_id, credential_id)
        await self._remove(credential)
        await self._audit(
            "admin_credential_deleted", operator, user_id, method=credential.method, credential_id=credential.id
        )
        return credential.view()

    async def mfa_credentials(self, user_id: str) -> list[Credential]:
        check_id(user_id, "userId")
        return [c for c in await self.service.credentials.list_for_user(user_id) if c.factor is Factor.MFA]

    async def reset_mfa(self, user_id: str, operator: Operator) -> MfaReset:
        """Remove every MFA credential (passkeys, authenticator apps, recovery codes) and revoke
        every live grant: the user steps up by re-authentication again and enrols new factors."""
        removed = []
        for credential in await self.mfa_credentials(user_id):
            await self._remove(credential)
            removed.append(credential.view())
        revoked = await self.service.tokens.revoke_user(user_id)
        await self._audit(
            "admin_mfa_reset",
            operator,
            user_id,
            details={"removed": [c.id for c in removed], "grantsRevoked": revoked},
        )
        return MfaReset(user_id=user_id, removed=tuple(removed), grants_revoked=revoked)
