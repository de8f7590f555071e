"""StepUpService: the check, challenges, verification, enrolment, and the hygiene around them.

Everything that must be the same for every method lives here so no plugin can get it wrong:
challenge ids, expiry, single use and binding to user and session; the attempt budget per
challenge; the per-user failure lockout; begin rate limits; "re-auth cannot mint when MFA
exists"; scope policy; minting; audit events; failing closed.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import pluggy

from .clock import Clock, SystemClock
from .config import StepUpConfig
from .credentials import StoreCredentialRepository
from .crypto import SecretKeys, random_id
from .errors import (
    AttemptsExhausted,
    ChallengeExpired,
    ChallengeNotFound,
    ChallengePending,
    ChallengeUsed,
    CredentialNotFound,
    DeliveryFailed,
    InvalidScope,
    LockedOut,
    MethodNotAllowed,
    NoEligibleCredential,
    PluginError,
    RateLimited,
    StepUpError,
    StepUpRequired,
    StoreUnavailable,
    UnknownMethod,
    ValidationError,
    VerificationFailed,
    VerifierCrashed,
)
from .models import (
    AuditEvent,
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
    CredentialUpdate,
    CredentialView,
    EnrollmentCompletion,
    EnrollmentRequest,
    EnrollmentStart,
    Factor,
    Grant,
    Interaction,
    IssuedToken,
    MethodInfo,
    Principal,
    Route,
    StepUpVote,
    TokenBehavior,
    VerifyRequest,
)
from .models import Challenge as ChallengeRecord
from .observe import observe
from .plugins import get_plugin_manager
from .scopes import ScopePolicies, TokenScope
from .serialization import dumps, loads, unstructure
from .store import open_store
from .store.base import Counter, Store, make_key
from .tokens import TokenStore
from .verifier import Attempt, NewCredential, RateLimit, Verification, Verifier, VerifierContext

log = logging.getLogger("stepup")

#: Records outlive their logical expiry by this much so "expired" can be told from "unknown".
_GRACE_SECONDS = 120.0
_DEV_KEY = "meta:dev-secret-key"
#: Marks an enrolment begun while the user held no credential (so without a ``credential:link`` token).
_FIRST_CREDENTIAL = "stepup.firstCredential"
MAX_ALIAS_LENGTH = 64


def _challenge_key(challenge_id: str) -> str:
    return make_key("challenge", challenge_id)


def _callback_key(method: str, state: str) -> str:
    return make_key("callback", method, hashlib.sha256(state.encode()).hexdigest())


def _failures_key(user_id: str) -> str:
    return make_key("failures", user_id)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


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
        self.credentials = StoreCredentialRepository(store)
        self.public_url: str | None = config.server.public_url
        self.verifiers: dict[str, Verifier] = {}
        self.verifier_plugins: dict[str, str] = {}
        self._register_verifiers()
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
        config = config or StepUpConfig()
        pm = pm or get_plugin_manager()
        clock = clock or SystemClock()
        store = store or await open_store(config.store, pm, clock)
        master = config.secret_key_bytes()
        if master is not None:
            keys = SecretKeys(master)
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
        try:
            for impl in reversed(pm.hook.stepup_startup.get_hookimpls()):  # pluggy's call order
                await _maybe_await(impl.function(service=service))
        except BaseException:
            await service.close()
            raise
        return service

    async def close(self) -> None:
        for impl in self.pm.hook.stepup_shutdown.get_hookimpls():  # the reverse of startup's order
            try:
                await _maybe_await(impl.function(service=self))
            except Exception:
                log.exception("stepup_shutdown implementation %s failed", impl.plugin_name)
        await self.store.close()

    def _register_verifiers(self) -> None:
        for impl in self.pm.hook.stepup_register_verifiers.get_hookimpls():

            def register(verifier: Verifier, _plugin: str = impl.plugin_name) -> None:
                name = verifier.name
                if name in self.verifiers:
                    raise PluginError(
                        f"method {name!r} is registered by both {self.verifier_plugins[name]!r} and {_plugin!r}"
                    )
                self.verifiers[name] = verifier
                self.verifier_plugins[name] = _plugin

            kwargs = {"register": register, "config": self.config}
            impl.function(**{k: kwargs[k] for k in impl.argnames})

    def callback_url(self, method: str) -> str:
        base = (self.public_url or "").rstrip("/")
        if not base:
            raise StepUpError("server.public_url is not set, so redirect methods cannot build a callback URL")
        return f"{base}{self.config.server.prefix}/callback/{method}"

    # --- hooks the core calls ---------------------------------------------------------

    async def emit(self, event: AuditEvent) -> None:
        """Send an audit event to every ``stepup_event`` implementation; failures are logged only."""
        for impl in self.pm.hook.stepup_event.get_hookimpls():
            try:
                if "service" in impl.argnames:
                    await _maybe_await(impl.function(event=event, service=self))
                else:
                    await _maybe_await(impl.function(event=event))
            except Exception:
                log.exception("stepup_event implementation %s failed", impl.plugin_name)

    async def _credential_changed(
        self,
        kind: CredentialChangeKind,
        principal: Principal,
        credential: Credential,
        replaced: Sequence[Credential] = (),
    ) -> None:
        """Tell ``stepup_credential_changed`` implementations; failures are logged only."""
        impls = self.pm.hook.stepup_credential_changed.get_hookimpls()
        if not impls:
            return
        change = CredentialChange(
            kind, principal.user_id, principal.session_id, self.clock.now(), credential, tuple(replaced)
        )
        for impl in impls:
            try:
                await _maybe_await(impl.function(change=change, service=self))
            except Exception:
                log.exception("stepup_credential_changed implementation %s failed", impl.plugin_name)

    def _event(self, type: str, outcome: str, principal: Principal | None = None, **fields: Any) -> AuditEvent:
        if principal is not None:
            fields.setdefault("user_id", principal.user_id)
            fields.setdefault("session_id", principal.session_id)
        return AuditEvent(type=type, outcome=outcome, at=self.clock.now(), **fields)

    async def deliver_code(self, delivery: CodeDelivery) -> None:
        try:
            offers = self.pm.hook.stepup_deliver_code(delivery=delivery, config=self.config)
        except Exception as exc:
            raise DeliveryFailed(f"code delivery failed: {exc}") from exc
        sender = next((s for s in offers if s is not None), None)
        if sender is None:
            raise DeliveryFailed(f"no code sender for channel {delivery.channel!r}")
        try:
            try:
                await sender.send(delivery)
            except DeliveryFailed:
                raise
            except Exception as exc:
                raise DeliveryFailed(
                    f"{getattr(sender, 'name', 'sender')} could not deliver the code over {delivery.channel}: {exc}"
                ) from exc
        except DeliveryFailed as failure:
            await self.emit(
                AuditEvent(
                    type="code_delivery_failed",
                    outcome="failure",
                    at=self.clock.now(),
                    user_id=delivery.user_id,
                    reason=failure.code,
                    details={"channel": delivery.channel, "sender": getattr(sender, "name", None)},
                )
            )
            raise
        await self.emit(
            AuditEvent(
                type="code_delivered",
                outcome="info",
                at=self.clock.now(),
                user_id=delivery.user_id,
                details={"channel": delivery.channel, "sender": getattr(sender, "name", None)},
            )
        )

    async def _votes(self, principal: Principal, scope: str) -> list[StepUpVote]:
        policy = self.policies.policy_for(scope)
        votes = [v for v in self.pm.hook.stepup_check(principal=principal, scope=scope, policy=policy) if v]
        if not votes:
            raise PluginError("no stepup_check implementation answered")
        odd = next((v for v in votes if not isinstance(v, StepUpVote)), None)
        if odd is not None:  # fails closed like an exception: "required"
            raise PluginError(f"a stepup_check implementation answered a {type(odd).__name__}, not a StepUpVote")
        return votes

    # --- credentials and routing ------------------------------------------------------

    def _method_for_format(self, credential: Credential) -> str | None:
        for verifier in self.verifiers.values():
            if credential.format in verifier.formats:
                return verifier.name
        return None

    async def _user_credentials(self, principal: Principal) -> list[Credential]:
        stored = await self.credentials.list_for_user(principal.user_id)
        seen = {c.id for c in stored}
        supplied: list[Credential] = []
        for answer in self.pm.hook.stepup_user_credentials(principal=principal):
            for credential in (await _maybe_await(answer)) or ():
                if credential.id in seen:
                    continue
                seen.add(credential.id)
                method = credential.method or self._method_for_format(credential) or ""
                supplied.append(
                    attrs.evolve(credential, user_id=principal.user_id, method=method, external=True)
                )
        return [c for c in [*stored, *supplied] if c.method in self.verifiers]

    def _eligible(self, credential: Credential) -> bool:
        check = getattr(self.verifiers[credential.method], "eligible", None)
        return True if check is None else bool(check(credential))

    def _is_primary_mfa(self, credential: Credential) -> bool:
        verifier = self.verifiers[credential.method]
        return verifier.factor is Factor.MFA and not verifier.fallback

    def _route(
        self, principal: Principal, credentials: Sequence[Credential]
    ) -> tuple[Route, list[Credential], str | None]:
        credentials = [c for c in credentials if self._eligible(c)]
        primary = [c for c in credentials if self._is_primary_mfa(c)]
        if primary:
            fallback = [
                c for c in credentials if self.verifiers[c.method].factor is Factor.MFA and not self._is_primary_mfa(c)
            ]
            default = next((c for c in primary if c.is_default), None) or max(
                primary, key=lambda c: (c.created_at, c.id)
            )
            return Route.MFA, [*primary, *fallback], default.id
        reauth = [c for c in credentials if self.verifiers[c.method].factor is Factor.REAUTH]
        return Route.REAUTH, reauth, self._default_reauth(principal, reauth)

    @staticmethod
    def _default_reauth(principal: Principal, candidates: Sequence[Credential]) -> str | None:
        if principal.sign_in_credential_id and any(c.id == principal.sign_in_credential_id for c in candidates):
            return principal.sign_in_credential_id
        signed_in = next((c for c in candidates if c.sign_in), None)
        if signed_in is not None:
            return signed_in.id
        return candidates[0].id if candidates else None

    def _pick_credential(
        self,
        principal: Principal,
        verifier: Verifier,
        candidates: Sequence[Credential],
        requested_id: str | None,
    ) -> Credential | None:
        if requested_id is not None:
            found = next((c for c in candidates if c.id == requested_id), None)
            if found is None:
                raise CredentialNotFound(
                    f"no {verifier.name} credential {requested_id!r} for this user", credentialId=requested_id
                )
            return found
        if not candidates:
            return None
        if verifier.factor is Factor.MFA:
            return next((c for c in candidates if c.is_default), None) or max(
                candidates, key=lambda c: (c.created_at, c.id)
            )
        default_id = self._default_reauth(principal, candidates)
        return next(c for c in candidates if c.id == default_id)

    def _ensure_may_mint(self, verifier: Verifier, credentials: Sequence[Credential], scopes: Iterable[str]) -> None:
        has_mfa = any(self._is_primary_mfa(c) and self._eligible(c) for c in credentials)
        if verifier.factor is Factor.REAUTH and has_mfa:
            raise MethodNotAllowed(
                f"this user has MFA, so re-authentication ({verifier.name}) cannot grant elevated access; "
                "verify with an MFA method instead",
                method=verifier.name,
            )
        if verifier.fallback and not has_mfa:
            raise MethodNotAllowed(
                f"{verifier.name} is a fallback for MFA and needs another MFA credential (passkey or TOTP)",
                method=verifier.name,
            )
        self.policies.ensure_method_allowed(scopes, verifier.name, verifier.factor)

    # --- the check --------------------------------------------------------------------

    def _validate_scopes(self, scopes: Iterable[str], field: str = "requestedScopes") -> tuple[str, ...]:
        out: list[str] = []
        for index, scope in enumerate(scopes):
            out.append(self.policies.validate(scope, f"{field}[{index}]"))
        return tuple(dict.fromkeys(out))

    async def check(self, principal: Principal, scope: str, token: str | None = None) -> CheckResult:
        """The StepUpCheck. Fails closed: any error on this path answers "required"."""
        scope = self.policies.validate(scope)
        try:
            votes = await self._votes(principal, scope)
            credentials = await self._user_credentials(principal)
            route, eligible, default_id = self._route(principal, credentials)
            grant = await self.tokens.peek(token, principal, scope) if token else None
            required_votes = [v for v in votes if v.required]
            if not required_votes:
                required = False
            else:
                required = not (grant is not None and all(v.accept_existing_token for v in required_votes))
            methods = tuple(dict.fromkeys(c.method for c in eligible))
            return CheckResult(
                scope=scope,
                is_required=required,
                route=route,
                credentials=tuple(c.view() for c in eligible),
                default_credential_id=default_id,
                reasons=tuple(v.reason for v in required_votes) if required else (),
                methods=methods,
            )
        except Exception as exc:
            log.warning("stepup check for %s failed closed: %s", scope, exc, exc_info=True)
            await self.emit(
                self._event("check_failed", "failure", principal, scopes=(scope,), reason=type(exc).__name__)
            )
            return CheckResult(scope=scope, is_required=True, route=Route.REAUTH, reasons=("check_failed",))

    async def require_scope(self, principal: Principal, scope: str, token: str | None) -> Grant | None:
        """Gate an action: the grant that covers ``scope`` (single-use tokens are consumed), None
        when the scope needs no step-up, else :class:`StepUpRequired` carrying the check.
        :class:`StoreUnavailable` propagates (the server answers 503): never a grant."""
        scope = self.policies.validate(scope)
        try:
            votes = await self._votes(principal, scope)
        except Exception as exc:  # noqa: BLE001 - a failing vote means required
            log.warning("stepup_check failed for %s: %s", scope, exc)
            votes = [StepUpVote(required=True, reason="check_failed", accept_existing_token=False)]
        required_votes = [v for v in votes if v.required]
        if not required_votes:
            return None
        if token and all(v.accept_existing_token for v in required_votes):
            grant = await self.tokens.validate(token, principal, scope)
            if grant is not None:
                await self.emit(
                    self._event(
                        "grant_used", "success", principal, method=grant.method, scopes=(scope,),
                        details={"singleUse": grant.single_use},
                    )
                )
                return grant
        await self.store.ping()
        await self._grant_refused(principal, scope, token, required_votes)
        result = await self.check(principal, scope)
        raise StepUpRequired(
            f"step-up authentication is required for {scope}", scope, check=unstructure(result)
        )

    async def _grant_refused(
        self, principal: Principal, scope: str, token: str | None, votes: Sequence[StepUpVote] = ()
    ) -> None:
        """Audit an action refused although a token was presented: ``token_not_valid``
        (expired, used, revoked, another scope or another session: worth watching) or
        ``fresh_verification_required`` (a vote refused held tokens). A call without a token,
        the usual first call before a step-up, is not an event."""
        if not token:
            return
        if not all(v.accept_existing_token for v in votes):
            reason, outcome = "fresh_verification_required", "info"
        else:
            reason, outcome = "token_not_valid", "failure"
        await self.emit(self._event("grant_refused", outcome, principal, scopes=(scope,), reason=reason))

    async def _require_token(self, principal: Principal, scope: str, token: str | None) -> Grant:
        grant = await self.tokens.validate(token, principal, scope) if token else None
        if grant is None:
            await self._grant_refused(principal, scope, token)
            result = await self.check(principal, scope)
            raise StepUpRequired(
                f"this action needs an elevated access token for {scope}", scope, check=unstructure(result)
            )
        return grant

    # --- methods ----------------------------------------------------------------------

    def methods(self) -> list[MethodInfo]:
        return [
            MethodInfo(
                name=v.name,
                factor=v.factor,
                formats=tuple(v.formats),
                interaction=v.interaction,
                fallback=v.fallback,
                requires_challenge=v.requires_challenge,
                plugin=self.verifier_plugins.get(v.name),
            )
            for v in sorted(self.verifiers.values(), key=lambda v: v.name)
        ]

    def _verifier(self, method: str) -> Verifier:
        verifier = self.verifiers.get(method)
        if verifier is None:
            installed = ", ".join(sorted(self.verifiers)) or "none"
            raise UnknownMethod(
                f"unknown method {method!r}; installed methods: {installed} (pip install stepup-{method})",
                method=method,
            )
        return verifier

    async def list_credentials(self, principal: Principal) -> list[CredentialView]:
        return [c.view() for c in await self._user_credentials(principal)]

    # --- limits -----------------------------------------------------------------------

    async def _ensure_not_locked(self, principal: Principal) -> None:
        failures = int(await self.store.get(_failures_key(principal.user_id)) or 0)
        if failures >= self.config.limits.lockout_failures:
            raise LockedOut(
                "too many failed verifications; try again later",
                retryAfter=self.config.limits.lockout_window,
            )

    async def hit_rate_limit(self, key: str, limit: RateLimit) -> None:
        """Count one event under ``key`` in ``limit``'s fixed window; RateLimited past the limit.
        Lent to verifiers as ``ctx.hit_rate_limit`` for limits the core cannot key for them."""
        count = await self.store.incr(make_key("rate", key, str(limit.window)), ttl=limit.window)
        if count > limit.limit:
            # The key's first part names the limit ("begin", "otp-enroll"); the rest, which
            # may hold ids or addresses, stays out of the event.
            await self.emit(
                AuditEvent(
                    type="rate_limited", outcome="warning", at=self.clock.now(),
                    details={"limit": key.split(":", 1)[0], "max": limit.limit, "window": limit.window},
                )
            )
            raise RateLimited(
                f"at most {limit.limit} per {limit.window:g} s; wait before asking again",
                retry_after=limit.window,
            )

    async def _reserve(
        self, principal: Principal, budget_key: str, budget_ttl: float, challenge: ChallengeRecord | None
    ) -> tuple[int, int]:
        """Take this guess's places in the attempt budget and in the user's lockout before it is
        evaluated, both or neither in one atomic step, so guesses sent at once (over one
        challenge or many) cannot overrun either. A wrong answer keeps both; anything else gives
        them back. Returns (the attempt's number, its place in the lockout)."""
        limits = self.config.limits
        reservation = await self.store.reserve(
            (
                Counter(budget_key, limits.max_attempts, budget_ttl),
                Counter(_failures_key(principal.user_id), limits.lockout_failures, limits.lockout_window),
            )
        )
        if not reservation.granted:
            if reservation.counts[1] >= limits.lockout_failures:
                raise LockedOut("too many failed verifications; try again later", retryAfter=limits.lockout_window)
            raise AttemptsExhausted(
                "too many wrong answers for this challenge; start a new one"
                if challenge
                else "too many wrong answers; wait before trying again"
            )
        used, place = reservation.counts
        return used, place

    async def _reserve_attempt(self, key: str, ttl: float, challenge: ChallengeRecord | None) -> int:
        """Count an attempt before verifying it, atomically, so concurrent guesses cannot
        overrun the budget. Returns the attempt's number."""
        used = await self.store.incr(key, ttl=ttl)
        if used > self.config.limits.max_attempts:
            raise AttemptsExhausted(
                "too many wrong answers for this challenge; start a new one"
                if challenge
                else "too many wrong answers; wait before trying again"
            )
        return used

    async def _record_failure(
        self,
        principal: Principal,
        verifier: Verifier,
        exc: StepUpError,
        challenge: ChallengeRecord | None,
        credential: Credential | None,
        attempts_used: int,
        failures: int | None = None,
    ) -> StepUpError:
        """Count a failure toward the user's lockout (unless its place was reserved: ``failures``),
        emit events, and return the error to raise: ``attempts_exhausted`` when this failure used
        up the budget."""
        if failures is None:
            failures = await self.store.incr(_failures_key(principal.user_id), ttl=self.config.limits.lockout_window)
        remaining = max(self.config.limits.max_attempts - attempts_used, 0)
        await self.emit(
            self._event(
                "verification_failed",
                "failure",
                principal,
                method=verifier.name,
                challenge_id=challenge.id if challenge else None,
                credential_id=credential.id if credential else None,
                reason=exc.code,
                details={"attempts": attempts_used, "message": exc.message},
            )
        )
        if failures == self.config.limits.lockout_failures:
            await self.emit(self._event("locked_out", "warning", principal, method=verifier.name))
        if remaining == 0:
            await self.emit(
                self._event("attempts_exhausted", "warning", principal, method=verifier.name,
                            challenge_id=challenge.id if challenge else None)
            )
            advice = "start a new challenge" if challenge is not None else "wait before trying again"
            return AttemptsExhausted(f"{exc.message}; no attempts left, {advice}")
        exc.details.setdefault("attemptsRemaining", remaining)
        return exc

    # --- challenges -------------------------------------------------------------------

    async def _save_challenge(self, challenge: ChallengeRecord) -> None:
        ttl = max(challenge.expires_at - self.clock.now(), 0) + _GRACE_SECONDS
        await self.store.put(_challenge_key(challenge.id), dumps(challenge), ttl=ttl)

    async def _load_challenge(
        self, principal: Principal | None, challenge_id: str, purpose: ChallengePurpose | None
    ) -> ChallengeRecord:
        raw = await self.store.get(_challenge_key(challenge_id))
        if raw is None:
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge_id)
        challenge = loads(raw, ChallengeRecord)
        # Another user's or session's challenge reads as unknown: no existence oracle.
        if principal is not None and (
            challenge.user_id != principal.user_id or challenge.session_id != principal.session_id
        ):
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge_id)
        if purpose is not None and challenge.purpose is not purpose:
            raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge_id)
        return challenge

    def _ensure_live(self, challenge: ChallengeRecord) -> None:
        if challenge.expires_at <= self.clock.now():
            raise ChallengeExpired("the challenge expired; start a new one", challengeId=challenge.id)

    async def begin(self, principal: Principal, request: ChallengeRequest) -> ChallengeStart:
        verifier = self._verifier(request.method)
        scopes = self._validate_scopes(request.requested_scopes)
        await self._ensure_not_locked(principal)
        credentials = await self._user_credentials(principal)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        credential = self._pick_credential(principal, verifier, candidates, request.credential_id)
        if not candidates:
            raise NoEligibleCredential(
                f"this user has no {verifier.name} credential; enrol one first", method=verifier.name
            )
        self._ensure_may_mint(verifier, credentials, scopes)
        for limit in verifier.begin_limits:
            subject = credential.id if credential else principal.user_id
            await self.hit_rate_limit(make_key("begin", verifier.name, subject), limit)
        now = self.clock.now()
        challenge = ChallengeRecord(
            id=random_id("chl"),
            method=verifier.name,
            purpose=ChallengePurpose.STEP_UP,
            user_id=principal.user_id,
            session_id=principal.session_id,
            created_at=now,
            expires_at=now + (verifier.challenge_ttl or self.config.limits.challenge_ttl),
            requested_scopes=scopes,
            credential_id=credential.id if credential else None,
            callback_state=secrets.token_urlsafe(32) if verifier.interaction is Interaction.REDIRECT else None,
        )
        attempt = Attempt(
            principal, credential, candidates, dict(request.params), challenge, scopes,
            credential_requested=request.credential_id is not None,
        )
        data = await self._call_plugin(verifier, "begin", verifier.begin, attempt)
        if challenge.credential_id is not None and all(c.id != challenge.credential_id for c in candidates):
            raise PluginError(f"method {verifier.name} bound its challenge to a credential of another user")
        await self._save_challenge(challenge)
        if challenge.callback_state:
            await self.store.put(
                _callback_key(verifier.name, challenge.callback_state),
                challenge.id,
                ttl=challenge.expires_at - now + _GRACE_SECONDS,
            )
        await self.emit(
            self._event("challenge_issued", "info", principal, method=verifier.name, challenge_id=challenge.id,
                        credential_id=challenge.credential_id, scopes=scopes)
        )
        return ChallengeStart(
            challenge_id=challenge.id,
            method=verifier.name,
            expires_at=challenge.expires_at,
            interaction=verifier.interaction,
            credential_id=challenge.credential_id,
            requested_scopes=scopes,
            data=dict(data or {}),
        )

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

    async def verify(self, principal: Principal, request: VerifyRequest) -> IssuedToken:
        verifier = self._verifier(request.method)
        if verifier.interaction is Interaction.REDIRECT:
            raise MethodNotAllowed(
                f"{verifier.name} completes through its callback ({self.config.server.prefix}/callback/"
                f"{verifier.name}); poll GET /challenges/{{id}} for the grant",
                method=verifier.name,
            )
        scopes = self._validate_scopes(request.requested_scopes)
        # The lockout is checked by the reservation below, in the same atomic step that counts
        # this guess, so a request that gets that far reads nothing first. One refused earlier
        # says "locked out" all the same when the user is: every method, whatever else is wrong.
        challenge: ChallengeRecord | None = None
        try:
            if request.challenge_id is not None:
                challenge = await self._load_challenge(principal, request.challenge_id, ChallengePurpose.STEP_UP)
                if challenge.method != verifier.name:
                    raise ChallengeNotFound("unknown, used or exhausted challenge", challengeId=challenge.id)
                if challenge.status is not ChallengeStatus.PENDING:
                    raise ChallengeUsed("this challenge was already completed", challengeId=challenge.id)
                self._ensure_live(challenge)
                if scopes and challenge.requested_scopes and not set(scopes) <= set(challenge.requested_scopes):
                    raise InvalidScope("requestedScopes must be among the scopes the challenge was issued for",
                                       "requestedScopes")
                scopes = scopes or challenge.requested_scopes
                named = request.credential_id
                if named and challenge.credential_id and named != challenge.credential_id:
                    raise ValidationError(
                        "credentialId differs from the challenge's credential",
                        [{"path": "credentialId", "message": "does not match the challenge"}],
                    )
            if challenge is None and verifier.requires_challenge:
                raise ValidationError(
                    f"method {verifier.name} needs a challengeId: start one with POST /challenges",
                    [{"path": "challengeId", "message": "required for this method"}],
                )
            if not scopes:
                raise ValidationError(
                    "name the scopes to grant in requestedScopes",
                    [{"path": "requestedScopes", "message": "at least one scope is required"}],
                )
            credentials = await self._user_credentials(principal)
            candidates = tuple(c for c in credentials if c.method == verifier.name)
            credential = self._pick_credential(
                principal, verifier, candidates,
                request.credential_id or (challenge.credential_id if challenge else None),
            )
            if not candidates:
                raise NoEligibleCredential(
                    f"this user has no {verifier.name} credential; enrol one first", method=verifier.name
                )
            self._ensure_may_mint(verifier, credentials, scopes)
        except StepUpError:
            await self._ensure_not_locked(principal)
            raise

        if challenge is not None:
            budget_key = make_key("attempts", challenge.id)
            budget_ttl = max(challenge.expires_at - self.clock.now(), 1.0) + _GRACE_SECONDS
        else:
            subject = credential.id if credential else "-"
            budget_key = make_key("attempts", principal.user_id, verifier.name, subject)
            budget_ttl = verifier.challenge_ttl or self.config.limits.challenge_ttl
        used, place = await self._reserve(principal, budget_key, budget_ttl, challenge)

        attempt = Attempt(
            principal, credential, candidates, dict(request.response), challenge, scopes,
            credential_requested=request.credential_id is not None
            or (challenge is not None and challenge.credential_id is not None),
        )
        try:
            with observe(self.pm, "verifier.verify", method=verifier.name):
                verification: Verification = await verifier.verify(self.ctx, attempt)
            if all(c.id != verification.credential_id for c in candidates):
                raise VerificationFailed("the response proves a credential this user does not hold")
        except VerificationFailed as exc:
            raise await self._record_failure(principal, verifier, exc, challenge, credential, used, place) from None
        except StepUpError:
            # Not a wrong answer (a provider outage, a policy refusal): give both places back.
            await self.store.settle(release=(_failures_key(principal.user_id), budget_key))
            raise
        except Exception as exc:
            log.exception("method %s failed in verify", verifier.name)
            failure = VerifierCrashed(f"method {verifier.name} could not verify the response")
            raise await self._record_failure(principal, verifier, failure, challenge, credential, used, place) from exc

        # A success gives its lockout place back, and for challenge-less methods its place in
        # the per-credential budget; a challenge is used up. All of it, the grant and the
        # credential's last use are one atomic step.
        release = [_failures_key(principal.user_id)]
        if challenge is None:
            release.append(budget_key)
        proven = next(c for c in candidates if c.id == verification.credential_id)
        return await self._grant(principal, verifier, proven, scopes, challenge, release=release)

    async def _grant(
        self,
        principal: Principal,
        verifier: Verifier,
        credential: Credential,
        scopes: Sequence[str],
        challenge: ChallengeRecord | None,
        *,
        release: Sequence[str] = (),
        used_message: str = "this challenge was already completed",
    ) -> IssuedToken:
        """Mint the grant and record the credential's use, in one store step that also takes
        ``challenge`` (if any: ChallengeUsed when another request used it first) and gives back
        the places in ``release``."""
        behavior, ttl = self.policies.token_shape(scopes)
        issued, grant_write = self.tokens.prepare(
            principal,
            scopes,
            method=verifier.name,
            ttl=ttl,
            single_use=behavior is TokenBehavior.SINGLE_USE,
            credential_id=credential.id,
        )
        writes = [grant_write]
        if not credential.external:
            writes.append(self.credentials.last_used_write(credential, self.clock.now()))
        taken = challenge is not None
        settled = await self.store.settle(
            take=_challenge_key(challenge.id) if challenge is not None else None, release=release, writes=writes
        )
        if not settled:
            if release:  # this guess was no wrong answer: its places go back all the same
                await self.store.settle(release=release)
            assert taken and challenge is not None
            raise ChallengeUsed(used_message, challengeId=challenge.id)
        await self.emit(
            self._event(
                "grant_issued",
                "success",
                principal,
                method=verifier.name,
                credential_id=credential.id,
                challenge_id=challenge.id if challenge else None,
                scopes=issued.scopes,
                details={"singleUse": issued.single_use, "expiresAt": issued.expires_at},
            )
        )
        return issued

    # --- redirect methods -------------------------------------------------------------

    async def complete_callback(self, method: str, params: dict[str, str]) -> ChallengeState:
        """Finish a redirect method's challenge (or enrolment) from its callback query.

        The ``state`` parameter finds the challenge and is used once. On success the challenge
        becomes ``verified``; its owner picks the grant up with :meth:`challenge_status`.
        """
        verifier = self._verifier(method)
        if verifier.interaction is not Interaction.REDIRECT:
            raise UnknownMethod(f"method {method!r} has no callback", method=method)
        state = params.get("state")
        if not isinstance(state, str) or not state:
            raise ValidationError("the callback has no state", [{"path": "state", "message": "required"}])
        challenge_id = await self.store.take(_callback_key(method, state))
        if challenge_id is None:
            raise ChallengeNotFound("unknown or already used state")
        challenge = await self._load_challenge(None, challenge_id, None)
        principal = Principal(challenge.user_id, challenge.session_id)
        if challenge.status is not ChallengeStatus.PENDING:
            raise ChallengeUsed("this challenge was already completed", challengeId=challenge.id)
        try:
            self._ensure_live(challenge)
            await self._ensure_not_locked(principal)
            credentials = await self._user_credentials(principal)
            candidates = tuple(c for c in credentials if c.method == verifier.name)
            attempt = Attempt(principal, None, candidates, dict(params), challenge, challenge.requested_scopes)
            if challenge.purpose is ChallengePurpose.ENROLLMENT:
                await self._require_link_token_if_no_longer_first(principal, challenge, credentials, None)
                with observe(self.pm, "verifier.complete_enrollment", method=verifier.name):
                    new = await verifier.complete_enrollment(self.ctx, attempt)
                stored = await self._store_new_credential(principal, verifier, new, challenge.state.get("stepup.alias"))
                proven_id = stored.id
            else:
                attempt.credential = self._pick_credential(principal, verifier, candidates, challenge.credential_id)
                attempt.credential_requested = challenge.credential_id is not None
                self._ensure_may_mint(verifier, credentials, challenge.requested_scopes)
                with observe(self.pm, "verifier.verify", method=verifier.name):
                    verification = await verifier.verify(self.ctx, attempt)
                if all(c.id != verification.credential_id for c in candidates):
                    raise VerificationFailed("the response proves a credential this user does not hold")
                proven_id = verification.credential_id
        except Exception as exc:
            failure = exc if isinstance(exc, StepUpError) else VerifierCrashed(f"method {method} failed")
            if not isinstance(exc, StepUpError):
                log.exception("method %s failed in its callback", method)
            challenge.status = ChallengeStatus.FAILED
            challenge.failure = failure.code
            await self._save_challenge(challenge)
            if isinstance(failure, VerificationFailed):
                await self._record_failure(principal, verifier, failure, challenge, None, 1)
            if failure is exc:
                raise
            raise failure from exc
        challenge.status = ChallengeStatus.VERIFIED
        challenge.verified_credential_id = proven_id
        await self._save_challenge(challenge)
        await self.emit(
            self._event("challenge_verified", "success", principal, method=method, challenge_id=challenge.id,
                        credential_id=proven_id)
        )
        return ChallengeState(
            challenge_id=challenge.id, method=method, status=challenge.status, expires_at=challenge.expires_at
        )

    async def challenge_status(self, principal: Principal, challenge_id: str) -> ChallengeState:
        """Status of a challenge or enrolment. A step-up challenge completed by callback hands
        its grant to the owner exactly once (the challenge is taken atomically)."""
        challenge = await self._load_challenge(principal, challenge_id, None)
        state = ChallengeState(
            challenge_id=challenge.id,
            method=challenge.method,
            status=challenge.status,
            expires_at=challenge.expires_at,
            failure=challenge.failure,
        )
        if challenge.status is ChallengeStatus.PENDING:
            self._ensure_live(challenge)
            return state
        if challenge.purpose is ChallengePurpose.ENROLLMENT:
            return attrs.evolve(state, credential_id=challenge.verified_credential_id)
        if challenge.status is not ChallengeStatus.VERIFIED:
            return state
        self._ensure_live(challenge)  # the grant waits no longer than the challenge lives
        verifier = self._verifier(challenge.method)
        credentials = await self._user_credentials(principal)
        proven = next((c for c in credentials if c.id == challenge.verified_credential_id), None)
        if proven is None:
            raise CredentialNotFound("the verified credential no longer exists")
        self._ensure_may_mint(verifier, credentials, challenge.requested_scopes)
        # The challenge is taken in the grant's own step: of concurrent pollers one gets it.
        issued = await self._grant(
            principal, verifier, proven, challenge.requested_scopes, challenge,
            used_message="this challenge's grant was already picked up",
        )
        return attrs.evolve(state, status=ChallengeStatus.CONSUMED, grant=issued)

    # --- enrolment ----------------------------------------------------------------------

    async def _require_link_token(
        self, principal: Principal, credentials: Sequence[Credential], token: str | None
    ) -> None:
        if any(self._eligible(c) for c in credentials):
            await self._require_token(principal, TokenScope.CREDENTIAL_LINK, token)

    async def _require_link_token_if_no_longer_first(
        self, principal: Principal, enrollment: ChallengeRecord, credentials: Sequence[Credential], token: str | None
    ) -> None:
        """An enrolment begun with no credential needed no token; if a credential was linked
        while it was pending, completing it adds a second one and needs the token after all."""
        if enrollment.state.get(_FIRST_CREDENTIAL):
            await self._require_link_token(principal, credentials, token)

    async def _store_new_credential(
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
        )
        await self.credentials.save(credential)
        await self.emit(
            self._event("credential_enrolled", "success", principal, method=verifier.name,
                        credential_id=credential.id, details={"replaced": len(replaced)} if replaced else {})
        )
        kind = CredentialChangeKind.RESET if replaced else CredentialChangeKind.LINKED
        await self._credential_changed(kind, principal, credential, replaced)
        return credential

    @staticmethod
    def _check_alias(alias: str | None) -> None:
        if alias is not None and (len(alias) > MAX_ALIAS_LENGTH or not alias.strip()):
            raise ValidationError(
                f"alias must be 1 to {MAX_ALIAS_LENGTH} characters",
                [{"path": "alias", "message": f"1 to {MAX_ALIAS_LENGTH} characters"}],
            )

    async def begin_enrollment(
        self, principal: Principal, request: EnrollmentRequest, token: str | None = None
    ) -> EnrollmentStart:
        """Start enrolling a credential. When the user already holds a credential usable for
        step-up this needs a ``credential:link`` token; the first credential needs none."""
        verifier = self._verifier(request.method)
        self._check_alias(request.alias)
        credentials = await self._user_credentials(principal)
        await self._require_link_token(principal, credentials, token)
        now = self.clock.now()
        enrollment = ChallengeRecord(
            id=random_id("enr"),
            method=verifier.name,
            purpose=ChallengePurpose.ENROLLMENT,
            user_id=principal.user_id,
            session_id=principal.session_id,
            created_at=now,
            expires_at=now + max(verifier.challenge_ttl or 0, self.config.limits.challenge_ttl),
            callback_state=secrets.token_urlsafe(32) if verifier.interaction is Interaction.REDIRECT else None,
        )
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        attempt = Attempt(principal, None, candidates, dict(request.params), enrollment)
        step = await self._call_plugin(verifier, "begin_enrollment", verifier.begin_enrollment, attempt)
        if step.credential is not None:
            stored = await self._store_new_credential(principal, verifier, step.credential, request.alias)
            return EnrollmentStart(
                enrollment_id=enrollment.id,
                method=verifier.name,
                expires_at=enrollment.expires_at,
                data=dict(step.data),
                credential=stored.view(),
            )
        if request.alias:
            enrollment.state["stepup.alias"] = request.alias
        if not any(self._eligible(c) for c in credentials):
            enrollment.state[_FIRST_CREDENTIAL] = True
        await self._save_challenge(enrollment)
        if enrollment.callback_state:
            await self.store.put(
                _callback_key(verifier.name, enrollment.callback_state),
                enrollment.id,
                ttl=enrollment.expires_at - now + _GRACE_SECONDS,
            )
        await self.emit(
            self._event("enrollment_started", "info", principal, method=verifier.name, challenge_id=enrollment.id)
        )
        return EnrollmentStart(
            enrollment_id=enrollment.id, method=verifier.name, expires_at=enrollment.expires_at, data=dict(step.data)
        )

    async def complete_enrollment(
        self,
        principal: Principal,
        enrollment_id: str,
        completion: EnrollmentCompletion,
        token: str | None = None,
    ) -> CredentialView:
        await self._ensure_not_locked(principal)
        enrollment = await self._load_challenge(principal, enrollment_id, ChallengePurpose.ENROLLMENT)
        if enrollment.status is not ChallengeStatus.PENDING:
            raise ChallengeUsed("this enrolment was already completed", challengeId=enrollment.id)
        self._ensure_live(enrollment)
        verifier = self._verifier(enrollment.method)
        if verifier.interaction is Interaction.REDIRECT:
            raise ChallengePending(
                f"{verifier.name} enrolments complete through the provider's redirect; poll the enrolment status"
            )
        credentials = await self._user_credentials(principal)
        await self._require_link_token_if_no_longer_first(principal, enrollment, credentials, token)
        budget_ttl = max(enrollment.expires_at - self.clock.now(), 1.0) + _GRACE_SECONDS
        used = await self._reserve_attempt(make_key("attempts", enrollment.id), budget_ttl, enrollment)
        candidates = tuple(c for c in credentials if c.method == verifier.name)
        attempt = Attempt(principal, None, candidates, dict(completion.response), enrollment)
        try:
            with observe(self.pm, "verifier.complete_enrollment", method=verifier.name):
                new = await verifier.complete_enrollment(self.ctx, attempt)
        except VerificationFailed as exc:
            raise await self._record_failure(principal, verifier, exc, enrollment, None, used) from None
        except StepUpError:
            raise
        except Exception as exc:
            log.exception("method %s failed in complete_enrollment", verifier.name)
            raise PluginError(f"method {verifier.name} failed to complete the enrolment") from exc
        if await self.store.take(_challenge_key(enrollment.id)) is None:
            raise ChallengeUsed("this enrolment was already completed", challengeId=enrollment.id)
        stored = await self._store_new_credential(principal, verifier, new, enrollment.state.get("stepup.alias"))
        return stored.view()

    # --- credential management ----------------------------------------------------------

    async def _own_stored_credential(self, principal: Principal, credential_id: str) -> Credential:
        stored = await self.credentials.get(principal.user_id, credential_id)
        if stored is None:
            supplied = [c for c in await self._user_credentials(principal) if c.id == credential_id]
            if supplied:
                raise MethodNotAllowed("this credential is managed by the application, not by stepup")
            raise CredentialNotFound(f"no credential {credential_id!r} for this user", credentialId=credential_id)
        return stored

    async def update_credential(
        self, principal: Principal, credential_id: str, update: CredentialUpdate, token: str | None = None
    ) -> CredentialView:
        self._check_alias(update.alias)
        credential = await self._own_stored_credential(principal, credential_id)
        await self._require_token(principal, TokenScope.CREDENTIAL_UPDATE, token)
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
        await self.emit(
            self._event("credential_updated", "success", principal, method=changed.method, credential_id=changed.id)
        )
        return changed.view()

    async def delete_credential(self, principal: Principal, credential_id: str, token: str | None = None) -> None:
        credential = await self._own_stored_credential(principal, credential_id)
        await self._require_token(principal, TokenScope.CREDENTIAL_UNLINK, token)
        await self.credentials.delete(principal.user_id, credential.id)
        await self._forget(self.verifiers.get(credential.method), credential)
        await self.emit(
            self._event("credential_deleted", "success", principal, method=credential.method,
                        credential_id=credential.id)
        )
        await self._credential_changed(CredentialChangeKind.UNLINKED, principal, credential)

    async def _forget(self, verifier: Verifier | None, credential: Credential) -> None:
        forget = getattr(verifier, "forget", None)
        if forget is None:
            return
        try:
            await forget(self.ctx, credential)
        except Exception:
            log.exception("method %s failed to clean up credential %s", credential.method, credential.id)

    async def revoke_grants(self, principal: Principal) -> int:
        count = await self.tokens.revoke_session(principal.user_id, principal.session_id)
        await self.emit(self._event("grants_revoked", "info", principal, details={"count": count}))
        return count
