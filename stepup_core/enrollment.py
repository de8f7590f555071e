"""Enrolment and credential management: linking a credential, renaming or marking it default,
unlinking it.

Linking a credential when the user already holds one usable for step-up needs a
``credential:link`` token; the first credential needs none, but an enrolment begun as the first
needs the token after all if another credential was linked while it was pending. Renaming needs
``credential:update``, unlinking ``credential:unlink``. Credentials the application supplies
are managed by the application, not here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from .challenges import ChallengeRecords
from .clock import Clock
from .config import StepUpConfig
from .credentials import StoreCredentialRepository
from .crypto import random_id
from .errors import ChallengePending, CredentialNotFound, MethodNotAllowed
from .gate import Gate
from .limits import AttemptScope, Budget, Limits, free_live_slot, plugin_crash
from .models import (
    AuditEvent,
    Challenge,
    ChallengePurpose,
    Credential,
    CredentialChangeKind,
    CredentialRemoval,
    CredentialUpdate,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    EnrollmentStart,
    Interaction,
    Principal,
)
from .observe import observe
from .routing import Routing
from .scopes import TokenScope
from .verifier import Attempt, CredentialCleanup, NewCredential, Verifier, VerifierContext, check_alias

log = logging.getLogger("stepup")

#: Marks an enrolment begun while the user held no credential (so without a ``credential:link`` token).
FIRST_CREDENTIAL = "stepup.firstCredential"
#: The alias the person asked for, kept with a pending enrolment.
ALIAS = "stepup.alias"
#: Why fallback credentials (recovery codes) went with the user's last primary MFA credential.
FALLBACK_WITHOUT_MFA = "fallback_without_mfa"

CallPlugin = Callable[..., Awaitable[Any]]


class Enrollments:
    """Begin and complete enrolments; update and delete stored credentials."""

    def __init__(
        self,
        *,
        config: StepUpConfig,
        clock: Clock,
        ctx: VerifierContext,
        credentials: StoreCredentialRepository,
        routing: Routing,
        challenges: ChallengeRecords,
        limits: Limits,
        gate: Gate,
        emit: Callable[[AuditEvent], Awaitable[None]],
        event: Callable[..., AuditEvent],
        call_plugin: CallPlugin,
        credential_changed: Callable[..., Awaitable[None]],
    ) -> None:
        self.config = config
        self.clock = clock
        self.ctx = ctx
        self.credentials = credentials
        self.routing = routing
        self.challenges = challenges
        self.limits = limits
        self.gate = gate
        self._emit = emit
        self._event = event
        self._call_plugin = call_plugin
        self._credential_changed = credential_changed

    # --- the link token ------------------------------------------------------------------

    async def require_link_token(
        self, principal: Principal, credentials: Sequence[Credential], token: str | None
    ) -> None:
        if self.routing.has_step_up_credential(credentials):
            await self.gate.require_token(principal, TokenScope.CREDENTIAL_LINK, token)

    async def require_link_token_if_no_longer_first(
        self, principal: Principal, enrollment: Challenge, credentials: Sequence[Credential], token: str | None
    ) -> None:
        """An enrolment begun with no credential needed no token; if a credential was linked
        while it was pending, completing it adds a second one and needs the token after all."""
        if enrollment.state.get(FIRST_CREDENTIAL):
            await self.require_link_token(principal, credentials, token)

    # --- enrolment -----------------------------------------------------------------------

    async def begin(
        self, principal: Principal, request: EnrollmentRequest, token: str | None = None
    ) -> EnrollmentStart:
        """Start enrolling a credential. When the user already holds a credential usable for
        step-up this needs a ``credential:link`` token; the first credential needs none."""
        verifier = self.routing.verifier(request.method)
        check_alias(request.alias)
        credentials = await self.routing.user_credentials(principal)
        await self.require_link_token(principal, credentials, token)
        await self.limits.limit_begin(principal, verifier.name)
        ttl = max(verifier.challenge_ttl or 0, self.config.limits.challenge_ttl)
        enrollment = self.challenges.new(principal, verifier, ChallengePurpose.ENROLLMENT, ttl)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        scratch = attrs.evolve(enrollment, state={})
        attempt = Attempt(principal, None, candidates, dict(request.params), scratch)
        await self.limits.claim_live_slot(enrollment)
        try:
            step = await self._call_plugin(verifier, "begin_enrollment", verifier.begin_enrollment, attempt)
        except BaseException:
            await free_live_slot(self.ctx.store, enrollment)
            raise
        enrollment.state.update(scratch.state)  # the older form wrote its state there
        enrollment.state.update(step.state)
        start = EnrollmentStart(
            enrollment_id=enrollment.id, method=verifier.name, expires_at=enrollment.expires_at, data=dict(step.data)
        )
        if step.credential is not None:
            await free_live_slot(self.ctx.store, enrollment)  # linked at once: no record to keep
            stored = await self.store_new_credential(principal, verifier, step.credential, request.alias)
            return attrs.evolve(start, credential=stored.view())
        if request.alias:
            enrollment.state[ALIAS] = request.alias
        if not self.routing.has_step_up_credential(credentials):
            enrollment.state[FIRST_CREDENTIAL] = True
        await self.challenges.save_new(enrollment)
        await self._emit(
            self._event("enrollment_started", "info", principal, method=verifier.name, challenge_id=enrollment.id)
        )
        return start

    async def complete(
        self, principal: Principal, enrollment_id: str, completion: EnrollmentCompletion, token: str | None = None
    ) -> CredentialView:
        await self.limits.ensure_not_locked(principal)
        enrollment = await self.challenges.load_pending(
            principal, enrollment_id, ChallengePurpose.ENROLLMENT, "enrolment"
        )
        verifier = self.routing.verifier(enrollment.method)
        if verifier.interaction is Interaction.REDIRECT:
            raise ChallengePending(
                f"{verifier.name} enrolments complete through the provider's redirect; poll the enrolment status"
            )
        credentials = await self.routing.user_credentials(principal)
        await self.require_link_token_if_no_longer_first(principal, enrollment, credentials, token)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        attempt = Attempt(principal, None, candidates, dict(completion.response), enrollment)
        budget = Budget(self.challenges.budget_key(enrollment), self.challenges.budget_ttl(enrollment))
        scope = AttemptScope(principal, verifier.name, enrollment)
        crash = plugin_crash(verifier.name, "to complete the enrolment")
        async with self.limits.attempt(scope, budget, crash=crash, crash_counts=False):
            with observe(self.routing.pm, "verifier.complete_enrollment", method=verifier.name):
                new = await verifier.complete_enrollment(self.ctx, attempt)
        await self.challenges.take(enrollment, "enrolment")
        stored = await self.store_new_credential(principal, verifier, new, enrollment.state.get(ALIAS))
        return stored.view()

    async def complete_by_callback(self, principal: Principal, verifier: Verifier, attempt: Attempt) -> Credential:
        """The enrolment half of a redirect method's callback."""
        assert attempt.challenge is not None
        credentials = await self.routing.user_credentials(principal)
        await self.require_link_token_if_no_longer_first(principal, attempt.challenge, credentials, None)
        with observe(self.routing.pm, "verifier.complete_enrollment", method=verifier.name):
            new = await verifier.complete_enrollment(self.ctx, attempt)
        return await self.store_new_credential(principal, verifier, new, attempt.challenge.state.get(ALIAS))

    async def store_new_credential(
        self, principal: Principal, verifier: Verifier, new: NewCredential, alias: str | None
    ) -> Credential:
        replaced: list[Credential] = []
        if new.replaces_existing:
            for old in await self.credentials.list_for_user(principal.user_id):
                if old.method == verifier.name:
                    await self.credentials.delete(principal.user_id, old.id)
                    await self._forget(verifier, old)
                    replaced.append(old)
        credential = Credential(
            id=random_id("cred", 12),
            user_id=principal.user_id,
            method=verifier.name,
            format=new.format,
            factor=verifier.factor,
            created_at=self.clock.now(),
            type=new.type,
            alias=alias or new.alias,
            sign_in=new.sign_in,
            identifier=new.identifier,
            data=dict(new.data),
            public=dict(new.public),
        )
        await self.credentials.save(credential)
        await self._emit(
            self._event(
                "credential_enrolled",
                "success",
                principal,
                method=verifier.name,
                credential_id=credential.id,
                details={"replaced": len(replaced)} if replaced else {},
            )
        )
        kind = CredentialChangeKind.RESET if replaced else CredentialChangeKind.LINKED
        await self._credential_changed(kind, principal, credential, replaced)
        return credential

    # --- credential management -------------------------------------------------------------

    async def _own_stored_credential(self, principal: Principal, credential_id: str) -> Credential:
        stored = await self.credentials.get(principal.user_id, credential_id)
        if stored is None:
            supplied = [c for c in await self.routing.user_credentials(principal) if c.id == credential_id]
            if supplied:
                raise MethodNotAllowed("this credential is managed by the application, not by stepup")
            raise CredentialNotFound(f"no credential {credential_id!r} for this user", credentialId=credential_id)
        return stored

    async def update(
        self, principal: Principal, credential_id: str, update: CredentialUpdate, token: str | None = None
    ) -> CredentialView:
        check_alias(update.alias)
        credential = await self._own_stored_credential(principal, credential_id)
        await self.gate.require_token(principal, TokenScope.CREDENTIAL_UPDATE, token)
        if update.is_default:
            for other in await self.credentials.list_for_user(principal.user_id):
                if other.is_default and other.id != credential.id:
                    await self.credentials.save(attrs.evolve(other, is_default=False))
        changed = attrs.evolve(
            credential,
            alias=update.alias if update.alias is not None else credential.alias,
            is_default=update.is_default if update.is_default is not None else credential.is_default,
        )
        await self.credentials.save(changed)
        await self._emit(
            self._event("credential_updated", "success", principal, method=changed.method, credential_id=changed.id)
        )
        return changed.view()

    async def delete(
        self, principal: Principal, credential_id: str, token: str | None = None
    ) -> CredentialRemoval | None:
        """Unlink a credential (needs a ``credential:unlink`` token).

        Removing the user's last primary MFA credential (passkey, authenticator app) also removes
        their fallback credentials (recovery codes): those step up only beside primary MFA, and
        left alone they would refuse every use while offering nothing in the check. The answer
        is then a :class:`CredentialRemoval` naming them (None when nothing else went), and each
        removal is audited as ``credential_deleted`` with reason ``fallback_without_mfa``."""
        credential = await self._own_stored_credential(principal, credential_id)
        await self.gate.require_token(principal, TokenScope.CREDENTIAL_UNLINK, token)
        await self._remove(principal, credential)
        if credential.method not in self.routing.verifiers or not self.routing.is_primary_mfa(credential):
            return None
        remaining = await self.routing.user_credentials(principal)
        if any(self.routing.is_primary_mfa(c) and self.routing.eligible(c) for c in remaining):
            return None
        orphans = [c for c in remaining if self.routing.verifiers[c.method].fallback and not c.external]
        for orphan in orphans:
            await self._remove(principal, orphan, reason=FALLBACK_WITHOUT_MFA, details={"removedWith": credential.id})
        if not orphans:
            return None
        return CredentialRemoval(
            credential_id=credential.id,
            also_removed=tuple(c.view() for c in orphans),
            reason=(
                "this was the last passkey or authenticator app, so the recovery codes were removed too: "
                "they work only beside one; enrol a new device, then generate new recovery codes"
            ),
        )

    async def _remove(
        self,
        principal: Principal,
        credential: Credential,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.credentials.delete(principal.user_id, credential.id)
        await self._forget(self.routing.verifiers.get(credential.method), credential)
        await self._emit(
            self._event(
                "credential_deleted",
                "success",
                principal,
                method=credential.method,
                credential_id=credential.id,
                reason=reason,
                details=details or {},
            )
        )
        await self._credential_changed(CredentialChangeKind.UNLINKED, principal, credential)

    async def _forget(self, verifier: object, credential: Credential) -> None:
        """Let the method drop its own records of a deleted credential; errors are logged only."""
        if not isinstance(verifier, CredentialCleanup):
            return
        try:
            await verifier.forget(self.ctx, credential)
        except Exception:
            log.exception("method %s failed to clean up credential %s", credential.method, credential.id)
