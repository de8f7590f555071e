"""Redirect methods (social sign-in): the provider sends the browser back to
``{prefix}/callback/{method}``, the callback completes the challenge (or enrolment) it names by
its ``state``, and the challenge's owner picks the grant up by polling ``GET
/challenges/{id}``, exactly once.

A callback carries no session: it finds its challenge by the one-use ``state`` and acts for the
challenge's user and session. A wrong answer counts toward that user's lockout like any other,
and a failed callback leaves the challenge ``failed`` with the error's code for the poller.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import attrs
import pluggy

from .challenges import ChallengeRecords
from .enrollment import Enrollments
from .errors import (
    ChallengeUsed,
    CredentialNotFound,
    SignInNotCompleted,
    StepUpError,
    UnknownMethod,
    ValidationError,
    VerifierCrashed,
)
from .grants import Grants
from .limits import AttemptScope, Limits
from .models import AuditEvent, Challenge, ChallengePurpose, ChallengeState, ChallengeStatus, Interaction, Principal
from .observe import observe
from .routing import Routing
from .verifier import Attempt, Verifier, VerifierContext

#: An OAuth ``error`` value safe to show (RFC 6749 error codes are short ASCII words).
_PROVIDER_ERROR = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


@attrs.define
class Callbacks:
    """Complete a redirect method's challenge from its callback; hand its grant to the poller."""

    pm: pluggy.PluginManager
    ctx: VerifierContext
    routing: Routing
    challenges: ChallengeRecords
    limits: Limits
    enrollments: Enrollments
    grants: Grants
    emit: Callable[[AuditEvent], Awaitable[None]]
    event: Callable[..., AuditEvent]

    async def complete(self, method: str, params: dict[str, str]) -> ChallengeState:
        """Finish a redirect method's challenge (or enrolment) from its callback query.

        The ``state`` parameter finds the challenge and is used once. On success the challenge
        becomes ``verified``; its owner picks the grant up with :meth:`status`.
        """
        verifier = self.routing.verifier(method)
        if verifier.interaction is not Interaction.REDIRECT:
            raise UnknownMethod(f"method {method!r} has no callback", method=method)
        state = params.get("state")
        if not isinstance(state, str) or not state:
            if params.get("error"):
                # Some providers drop the state when they refuse: no challenge can be found, but
                # the person in the browser is told what happened, not that a payload was invalid.
                reason = params["error"] if _PROVIDER_ERROR.match(str(params["error"])) else "unknown"
                raise SignInNotCompleted(
                    f"the sign-in provider did not complete the sign-in ({reason}) and did not say which "
                    "request it was answering; nothing was changed: close this window and start again "
                    "from the application",
                    reason,
                )
            raise ValidationError("the callback has no state", [{"path": "state", "message": "required"}])
        challenge = await self.challenges.by_callback_state(method, state)
        principal = Principal(challenge.user_id, challenge.session_id)
        if challenge.status is not ChallengeStatus.PENDING:
            raise ChallengeUsed("this challenge was already completed", challengeId=challenge.id)
        try:
            self.challenges.ensure_live(challenge)
            await self.limits.ensure_not_locked(principal)
            proven_id = await self._proof(principal, verifier, challenge, params)
        except Exception as exc:
            challenge.status = ChallengeStatus.FAILED
            challenge.failure = exc.code if isinstance(exc, StepUpError) else VerifierCrashed.code
            await self.challenges.save(challenge)
            raise
        challenge.status = ChallengeStatus.VERIFIED
        challenge.verified_credential_id = proven_id
        await self.challenges.save(challenge)
        await self.emit(
            self.event(
                "challenge_verified",
                "success",
                principal,
                method=method,
                challenge_id=challenge.id,
                credential_id=proven_id,
            )
        )
        return ChallengeState(
            challenge_id=challenge.id, method=method, status=challenge.status, expires_at=challenge.expires_at
        )

    async def _proof(
        self, principal: Principal, verifier: Verifier, challenge: Challenge, params: dict[str, str]
    ) -> str:
        """The credential a callback proves (or, for an enrolment, the one it links), checked
        inside the attempt context: a wrong answer counts toward the user's lockout."""
        credentials = await self.routing.user_credentials(principal)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        attempt = Attempt(principal, None, candidates, dict(params), challenge, challenge.requested_scopes)
        if challenge.purpose is ChallengePurpose.STEP_UP:
            attempt.credential = self.routing.pick_credential(principal, verifier, candidates, challenge.credential_id)
            attempt.credential_requested = challenge.credential_id is not None
            self.routing.ensure_may_mint(verifier, credentials, challenge.requested_scopes, challenge.transaction)
        crash = lambda: VerifierCrashed(f"method {verifier.name} failed")  # noqa: E731
        scope = AttemptScope(principal, verifier.name, challenge)
        async with self.limits.attempt(scope, None, crash=crash):
            if challenge.purpose is ChallengePurpose.ENROLLMENT:
                stored = await self.enrollments.complete_by_callback(principal, verifier, attempt)
                return stored.id
            with observe(self.pm, "verifier.verify", method=verifier.name):
                verification = await verifier.verify(self.ctx, attempt)
            proven = verification.proven_among(candidates)
        return proven.id

    async def status(self, principal: Principal, challenge_id: str) -> ChallengeState:
        """Status of a challenge or enrolment. A step-up challenge completed by callback hands
        its grant to the owner exactly once (the challenge is taken atomically)."""
        challenge = await self.challenges.load(principal, challenge_id, None)
        state = ChallengeState(
            challenge_id=challenge.id,
            method=challenge.method,
            status=challenge.status,
            expires_at=challenge.expires_at,
            failure=challenge.failure,
        )
        if challenge.status is ChallengeStatus.PENDING:
            self.challenges.ensure_live(challenge)
            return state
        if challenge.purpose is ChallengePurpose.ENROLLMENT:
            return attrs.evolve(state, credential_id=challenge.verified_credential_id)
        if challenge.status is not ChallengeStatus.VERIFIED:
            return state
        self.challenges.ensure_live(challenge)  # the grant waits no longer than the challenge lives
        verifier = self.routing.verifier(challenge.method)
        credentials = await self.routing.user_credentials(principal)
        proven = next((c for c in credentials if c.id == challenge.verified_credential_id), None)
        if proven is None:
            raise CredentialNotFound("the verified credential no longer exists")
        self.routing.ensure_may_mint(verifier, credentials, challenge.requested_scopes, challenge.transaction)
        # The challenge is taken in the grant's own store step: of concurrent pollers one gets it.
        issued = await self.grants.issue(
            principal,
            verifier,
            proven,
            challenge.requested_scopes,
            challenge,
            used_message="this challenge's grant was already picked up",
        )
        return attrs.evolve(state, status=ChallengeStatus.CONSUMED, grant=issued)
