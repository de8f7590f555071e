"""StepUpService: the facade over the core's parts. What must be the same for every method
lives in the core so no plugin can get it wrong; each rule has one home:

- :mod:`stepup_core.gate`: the check and protected routes (``stepup_check`` votes, the token);
- :mod:`stepup_core.routing`: methods, credentials, route, default credential, may-mint;
- :mod:`stepup_core.challenges`: challenge ids, expiry, single use, user and session binding;
- :mod:`stepup_core.limits`: lockout, attempt budgets, rate limits, one attempt context;
- :mod:`stepup_core.enrollment`: linking, renaming and unlinking credentials;
- :mod:`stepup_core.delivery`: sending codes, and refusing a start that would print them;
- :mod:`stepup_core.grants`: minting a grant and recording the use, in one store step;
- :mod:`stepup_core.callbacks`: redirect methods' callbacks, and handing their grant over;
- here: starting and answering challenges, audit events.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import pluggy

from .callbacks import Callbacks
from .challenges import ChallengeRecords
from .clock import Clock, SystemClock
from .config import StepUpConfig
from .credentials import StoreCredentialRepository
from .crypto import SecretKeys
from .delivery import CodeDeliveries
from .enrollment import Enrollments
from .errors import (
    ChallengeNotFound,
    ChallengeUsed,
    InvalidScope,
    MethodNotAllowed,
    PluginError,
    StepUpError,
    StoreUnavailable,
    ValidationError,
    VerifierCrashed,
)
from .gate import Gate
from .grants import Grants
from .keyring import check_key_ledger
from .limits import AttemptScope, Budget, Limits, free_live_slot
from .models import (
    AuditEvent,
    Challenge,
    ChallengePurpose,
    ChallengeRequest,
    ChallengeStart,
    ChallengeState,
    ChallengeStatus,
    CheckResult,
    CodeDelivery,
    Credential,
    CredentialChange,
    CredentialChangeKind,
    CredentialRemoval,
    CredentialUpdate,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    EnrollmentStart,
    Grant,
    Interaction,
    IssuedToken,
    MethodInfo,
    Principal,
    VerifyRequest,
)
from .observe import observe
from .plugins import await_in_order, call_each_plugin, collect_registrations, get_plugin_manager, settle
from .routing import Routing
from .scopes import ScopePolicies
from .signing import KeyRing, grant_claims
from .startup import check_startup, close_quietly
from .store import open_store
from .store.base import Store, make_key
from .tokens import TokenStore
from .transaction import audit_details
from .verifier import Attempt, Begun, RateLimit, Verification, Verifier, VerifierContext

log = logging.getLogger("stepup")

_DEV_KEY = "meta:dev-secret-key"


class StepUpService:
    """The server's brain. Build it with :meth:`create`."""

    def __init__(
        self,
        *,
        pm: pluggy.PluginManager,
        store: Store,
        config: StepUpConfig,
        keys: SecretKeys,
        clock: Clock | None = None,
    ) -> None:
        self.pm = pm
        self.store = store
        self.config = config
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        self.policies: ScopePolicies = config.scope_policies()
        self.tokens = TokenStore(store, self.clock)
        self.keyring = KeyRing.for_config(store, self.clock, keys, config, self.policies)
        self.credentials = StoreCredentialRepository(store)
        self.public_url: str | None = config.server.public_url
        found = collect_registrations(pm, "stepup_register_verifiers", "method", lambda v: (v.name, v), config=config)
        self.verifiers: dict[str, Verifier] = found.items
        self.verifier_plugins: dict[str, str] = found.owners
        self.routing = Routing(pm, self.verifiers, self.verifier_plugins, self.credentials, self.policies)
        self.challenges = ChallengeRecords(store, self.clock)
        self.limits = Limits(store, config.limits, self.emit, self._event)
        self.deliveries = CodeDeliveries(pm, config, self.clock, self.emit, self._event)
        self.gate = Gate(pm, self.policies, self.routing, self.tokens, store, self.emit, self._event, self.keyring)
        self.grants = Grants(
            store,
            self.clock,
            self.policies,
            self.tokens,
            self.credentials,
            self.challenges,
            self.keyring,
            lambda: grant_claims(self.config, self.public_url),
            self.emit,
            self._event,
        )
        self.ctx = VerifierContext(
            store=store,
            clock=self.clock,
            keys=keys,
            credentials=self.credentials,
            emit=self.emit,
            deliver_code=self.deliver_code,
            callback_url=self.callback_url,
            hit_rate_limit=self.hit_rate_limit,
            app_name=config.app_name,
        )
        self.enrollments = Enrollments(
            config=config,
            clock=self.clock,
            ctx=self.ctx,
            credentials=self.credentials,
            routing=self.routing,
            challenges=self.challenges,
            limits=self.limits,
            gate=self.gate,
            emit=self.emit,
            event=self._event,
            call_plugin=self._call_plugin,
            credential_changed=self.credential_changed,
        )
        self.callbacks = Callbacks(
            pm,
            self.ctx,
            self.routing,
            self.challenges,
            self.limits,
            self.enrollments,
            self.grants,
            self.emit,
            self._event,
        )

    # --- construction -----------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        config: StepUpConfig | None = None,
        *,
        pm: pluggy.PluginManager | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> StepUpService:
        """Open the configured store, register the methods, check the configuration against them
        (:mod:`stepup_core.startup`), then run ``stepup_startup``. What a failed start opened is
        closed before the error propagates: up to the checks, the store this call opened (a
        ``store`` passed in stays the caller's); when a ``stepup_startup`` implementation fails,
        the whole service (``stepup_shutdown`` fires, the store closes)."""
        config = config or StepUpConfig()
        pm = pm or get_plugin_manager()
        clock = clock or SystemClock()
        opened = store is None
        store = store or await open_store(config.store, pm, clock)
        try:
            configured = config.secret_keys_bytes()
            if configured:
                keys = SecretKeys(configured[0], previous=tuple(configured[1:]))
                await check_key_ledger(store, keys)
            else:
                log.warning(
                    "stepup: no secret_key configured (STEPUP_SECRET_KEY): code hashes use a development "
                    "key kept in the store and method secrets are stored UNENCRYPTED. Set secret_key "
                    "for production."
                )
                await store.add(_DEV_KEY, secrets.token_hex(32), ttl=None)
                dev = await store.get(_DEV_KEY)
                if dev is None:
                    raise StoreUnavailable("could not read the development secret key from the store")
                keys = SecretKeys(bytes.fromhex(dev), encrypting=False)
            service = cls(pm=pm, store=store, config=config, keys=keys, clock=clock)
            check_startup(config, pm, service.policies, service.verifiers)
        except BaseException:
            if opened:
                await close_quietly(store)
            raise
        try:
            await await_in_order(pm.hook.stepup_startup(service=service))
        except BaseException:
            await service.close()
            raise
        return service

    async def close(self) -> None:
        """Fire ``stepup_shutdown`` (each implementation on its own: failures are logged), then
        close the store."""
        for owner, result in call_each_plugin(self.pm, "stepup_shutdown", service=self):
            await settle(owner, "stepup_shutdown", result)
        await self.store.close()

    def callback_url(self, method: str) -> str:
        base = (self.public_url or "").rstrip("/")
        if not base:
            raise StepUpError("server.public_url is not set, so redirect methods cannot build a callback URL")
        return f"{base}{self.config.server.prefix}/callback/{method}"

    # --- hooks the core calls ---------------------------------------------------------

    async def emit(self, event: AuditEvent) -> None:
        """Send an audit event to every ``stepup_event`` implementation; failures are logged only."""
        for owner, result in call_each_plugin(self.pm, "stepup_event", event=event, service=self):
            if result is not None:  # most sinks answer None: nothing to await or report
                await settle(owner, "stepup_event", result)

    async def credential_changed(
        self,
        kind: CredentialChangeKind,
        principal: Principal,
        credential: Credential,
        replaced: Sequence[Credential] = (),
    ) -> None:
        """Tell ``stepup_credential_changed`` implementations; failures are logged only."""
        if not self.pm.hook.stepup_credential_changed.get_hookimpls():
            return
        change = CredentialChange(
            kind, principal.user_id, principal.session_id, self.clock.now(), credential, tuple(replaced)
        )
        for owner, result in call_each_plugin(self.pm, "stepup_credential_changed", change=change, service=self):
            await settle(owner, "stepup_credential_changed", result)

    def _event(self, type: str, outcome: str, principal: Principal | None = None, **fields: Any) -> AuditEvent:
        if principal is not None:
            fields.setdefault("user_id", principal.user_id)
            fields.setdefault("session_id", principal.session_id)
        return AuditEvent(type=type, outcome=outcome, at=self.clock.now(), **fields)

    def check_code_delivery(self) -> None:
        """Refuse to serve when a method would send codes only to the console (see
        :meth:`stepup_core.delivery.CodeDeliveries.check`). ``stepup serve --config`` calls this
        at start; an application that mounts stepup calls it once its plugins are registered."""
        self.deliveries.check(self.verifiers.values())

    async def deliver_code(self, delivery: CodeDelivery) -> None:
        await self.deliveries.deliver(delivery)

    async def hit_rate_limit(self, key: str, limit: RateLimit) -> None:
        """Count one event under ``key`` in ``limit``'s fixed window; RateLimited past the limit.
        Lent to verifiers as ``ctx.hit_rate_limit`` for limits the core cannot key for them."""
        await self.limits.hit_rate_limit(key, limit)

    async def _call_plugin(self, verifier: Verifier, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a verifier call; errors that are not ours become a logged PluginError."""
        try:
            with observe(self.pm, f"verifier.{what}", method=verifier.name):
                return await fn(self.ctx, *args)
        except StepUpError:
            raise
        except Exception as exc:
            log.exception("method %s failed in %s", verifier.name, what)
            raise PluginError(f"method {verifier.name} failed in {what}") from exc

    # --- the check, methods and credentials ---------------------------------------------

    async def check(
        self, principal: Principal, scope: str, token: str | None = None, transaction: object = None
    ) -> CheckResult:
        """The StepUpCheck (see :meth:`stepup_core.gate.Gate.check`)."""
        return await self.gate.check(principal, scope, token, transaction)

    async def require_scope(
        self, principal: Principal, scope: str, token: str | None, transaction: object = None
    ) -> Grant | None:
        """Gate an action (see :meth:`stepup_core.gate.Gate.require_scope`)."""
        return await self.gate.require_scope(principal, scope, token, transaction)

    def methods(self) -> list[MethodInfo]:
        return self.routing.methods()

    async def list_credentials(self, principal: Principal) -> list[CredentialView]:
        return [c.view() for c in await self.routing.user_credentials(principal)]

    def _validate_scopes(self, scopes: Iterable[str], field: str = "requestedScopes") -> tuple[str, ...]:
        out = [self.policies.validate(scope, f"{field}[{index}]") for index, scope in enumerate(scopes)]
        return tuple(dict.fromkeys(out))

    # --- challenges -------------------------------------------------------------------

    async def begin(self, principal: Principal, request: ChallengeRequest) -> ChallengeStart:
        verifier = self.routing.verifier(request.method)
        scopes = self._validate_scopes(request.requested_scopes)
        await self.limits.ensure_not_locked(principal)
        credentials = await self.routing.user_credentials(principal)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        credential = self.routing.pick_credential(principal, verifier, candidates, request.credential_id)
        self.routing.require_candidates(verifier, candidates)
        bound = self.gate.bind(scopes, request.transaction)
        self.routing.ensure_may_mint(verifier, credentials, scopes, bound)
        for limit in verifier.begin_limits:
            subject = credential.id if credential else principal.user_id
            await self.hit_rate_limit(make_key("begin", verifier.name, subject), limit)
        await self.limits.limit_begin(principal, verifier.name)
        challenge = self.challenges.new(
            principal,
            verifier,
            ChallengePurpose.STEP_UP,
            verifier.challenge_ttl or self.config.limits.challenge_ttl,
            requested_scopes=scopes,
            credential_id=credential.id if credential else None,
            transaction=bound,
        )
        scratch = attrs.evolve(challenge, state={})
        attempt = Attempt(
            principal,
            credential,
            candidates,
            dict(request.params),
            scratch,
            scopes,
            credential_requested=request.credential_id is not None,
        )
        await self.limits.claim_live_slot(challenge)
        try:
            begun = Begun.of(await self._call_plugin(verifier, "begin", verifier.begin, attempt), scratch)
            if begun.credential_id is not None and all(c.id != begun.credential_id for c in candidates):
                raise PluginError(f"method {verifier.name} bound its challenge to a credential of another user")
        except BaseException:
            await free_live_slot(self.store, challenge)
            raise
        if begun.credential_id is not None:
            challenge.credential_id = begun.credential_id
        challenge.state.update(begun.state)
        await self.challenges.save_new(challenge)
        await self.emit(
            self._event(
                "challenge_issued",
                "info",
                principal,
                method=verifier.name,
                challenge_id=challenge.id,
                credential_id=challenge.credential_id,
                scopes=scopes,
                details=audit_details(bound),
            )
        )
        return ChallengeStart(
            challenge_id=challenge.id,
            method=verifier.name,
            expires_at=challenge.expires_at,
            interaction=verifier.interaction,
            credential_id=challenge.credential_id,
            requested_scopes=scopes,
            data=dict(begun.data),
            transaction=bound,
        )

    async def _answered_challenge(
        self, principal: Principal, verifier: Verifier, request: VerifyRequest, scopes: tuple[str, ...]
    ) -> tuple[Challenge | None, tuple[str, ...]]:
        """The challenge a verification answers (None for methods that need none), and the
        scopes to grant: those asked for, which must be among the challenge's."""
        if request.challenge_id is None:
            if verifier.requires_challenge:
                raise ValidationError(
                    f"method {verifier.name} needs a challengeId: start one with POST /challenges",
                    [{"path": "challengeId", "message": "required for this method"}],
                )
            return None, scopes
        challenge = await self.challenges.load(principal, request.challenge_id, ChallengePurpose.STEP_UP)
        if challenge.method != verifier.name:
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge.id)
        if challenge.status is not ChallengeStatus.PENDING:
            raise ChallengeUsed("this challenge was already completed", challengeId=challenge.id)
        self.challenges.ensure_live(challenge)
        if scopes and challenge.requested_scopes and not set(scopes) <= set(challenge.requested_scopes):
            raise InvalidScope(
                "requestedScopes must be among the scopes the challenge was issued for", "requestedScopes"
            )
        if request.credential_id and challenge.credential_id and request.credential_id != challenge.credential_id:
            raise ValidationError(
                "credentialId differs from the challenge's credential",
                [{"path": "credentialId", "message": "does not match the challenge"}],
            )
        return challenge, scopes or challenge.requested_scopes

    def _budget(
        self, principal: Principal, verifier: Verifier, challenge: Challenge | None, credential: Credential | None
    ) -> Budget:
        """Per challenge; for a method that needs none, per credential for a challenge's lifetime
        (a success gives its attempt back)."""
        if challenge is not None:
            return Budget(self.challenges.budget_key(challenge), self.challenges.budget_ttl(challenge))
        subject = credential.id if credential else "-"
        return Budget(
            make_key("attempts", principal.user_id, verifier.name, subject),
            verifier.challenge_ttl or self.config.limits.challenge_ttl,
            refund_on_success=True,
        )

    async def verify(self, principal: Principal, request: VerifyRequest) -> IssuedToken:
        verifier = self.routing.verifier(request.method)
        if verifier.interaction is Interaction.REDIRECT:
            raise MethodNotAllowed(
                f"{verifier.name} completes through its callback ({self.config.server.prefix}/callback/"
                f"{verifier.name}); poll GET /challenges/{{id}} for the grant",
                method=verifier.name,
            )
        scopes = self._validate_scopes(request.requested_scopes)
        # The lockout is checked by the attempt's reservation, in the same store operation that
        # counts it, so a verification that gets that far reads nothing first; one refused
        # earlier still says "locked out" when the user is (every method, whatever else is wrong).
        try:
            challenge, scopes = await self._answered_challenge(principal, verifier, request, scopes)
            if not scopes:
                raise ValidationError(
                    "name the scopes to grant in requestedScopes",
                    [{"path": "requestedScopes", "message": "at least one scope is required"}],
                )
            credentials = await self.routing.user_credentials(principal)
            candidates = tuple(c for c in credentials if c.method == verifier.name)
            bound = challenge.credential_id if challenge else None
            credential = self.routing.pick_credential(principal, verifier, candidates, request.credential_id or bound)
            self.routing.require_candidates(verifier, candidates)
            transaction = self.gate.binding(challenge, scopes, request.transaction)
            self.routing.ensure_may_mint(verifier, credentials, scopes, transaction)
        except StepUpError:
            await self.limits.ensure_not_locked(principal)
            raise
        attempt = Attempt(
            principal,
            credential,
            candidates,
            dict(request.response),
            challenge,
            scopes,
            credential_requested=request.credential_id is not None or bound is not None,
            transaction=transaction,
        )
        scope = AttemptScope(principal, verifier.name, challenge, credential)
        crash = lambda: VerifierCrashed(f"method {verifier.name} could not verify the response")  # noqa: E731
        budget = self._budget(principal, verifier, challenge, credential)
        async with self.limits.attempt(scope, budget, crash=crash) as places:
            with observe(self.pm, "verifier.verify", method=verifier.name):
                verification: Verification = await verifier.verify(self.ctx, attempt)
            proven = verification.proven_among(candidates)
            places.deferred = True  # given back below, in the grant's own store step
        return await self.grants.issue(
            principal,
            verifier,
            proven,
            scopes,
            challenge,
            verification.public,
            release=places.release,
            transaction=transaction,
        )

    # --- redirect methods (see :mod:`stepup_core.callbacks`) -----------------------------

    async def complete_callback(self, method: str, params: dict[str, str]) -> ChallengeState:
        """Finish a redirect method's challenge (or enrolment) from its callback query."""
        return await self.callbacks.complete(method, params)

    async def challenge_status(self, principal: Principal, challenge_id: str) -> ChallengeState:
        """Status of a challenge or enrolment; a step-up challenge completed by callback hands
        its grant to the owner exactly once."""
        return await self.callbacks.status(principal, challenge_id)

    # --- enrolment and credential management ----------------------------------------------

    async def begin_enrollment(
        self, principal: Principal, request: EnrollmentRequest, token: str | None = None
    ) -> EnrollmentStart:
        """Start enrolling a credential (see :mod:`stepup_core.enrollment`)."""
        return await self.enrollments.begin(principal, request, token)

    async def complete_enrollment(
        self, principal: Principal, enrollment_id: str, completion: EnrollmentCompletion, token: str | None = None
    ) -> CredentialView:
        return await self.enrollments.complete(principal, enrollment_id, completion, token)

    async def update_credential(
        self, principal: Principal, credential_id: str, update: CredentialUpdate, token: str | None = None
    ) -> CredentialView:
        return await self.enrollments.update(principal, credential_id, update, token)

    async def delete_credential(
        self, principal: Principal, credential_id: str, token: str | None = None
    ) -> CredentialRemoval | None:
        """Unlink a credential; what went with it, if anything (see :meth:`Enrollments.delete`)."""
        return await self.enrollments.delete(principal, credential_id, token)

    async def revoke_grants(self, principal: Principal) -> int:
        count = await self.tokens.revoke_session(principal.user_id, principal.session_id)
        await self.emit(self._event("grants_revoked", "info", principal, details={"count": count}))
        return count
