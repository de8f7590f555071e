"""The gate: is step-up required for a scope, and does a token let this request through?

``check`` (``POST /check``) and ``require_scope`` (a protected route) share one pure decision,
:func:`decide`, over the ``stepup_check`` votes; each runs the hook once. Any error on the
check path fails closed: "step-up required", never a grant.

RFC 9470: a grant counts only when its authentication class and age meet the scope's policy
(``acr_values``, ``max_age``) and, for a signed grant, its key is still published; a policy with
``accept_sign_in`` takes a fresh, strong enough sign-in as the step-up (spent by its first use
on a single-use scope). A refusal carries the policy's ``acr_values`` and ``max_age``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import pluggy

from .authn import grant_satisfies, sign_in_satisfies
from .clock import Clock
from .errors import PluginError, StepUpRequired
from .models import AuditEvent, CheckResult, Grant, Principal, Route, StepUpVote, TokenBehavior
from .routing import Routing
from .scopes import ScopePolicies, ScopePolicy
from .serialization import unstructure
from .signing import KeyRing
from .store.base import Store, make_key
from .tokens import GrantCheck, Presentation, TokenStore

log = logging.getLogger("stepup")

#: A spent sign-in's record outlives its freshness by this much.
_SIGN_IN_GRACE = 120.0


@attrs.frozen
class Decision:
    """What the votes say about one scope."""

    #: Some vote wants step-up.
    demanded: bool
    #: A valid elevated token for the scope satisfies every vote that wants step-up.
    token_suffices: bool
    #: The reasons of the votes that want step-up.
    reasons: tuple[str, ...] = ()

    def required(self, holds_valid_token: bool) -> bool:
        """Step-up is required unless no vote demands it, or a valid token suffices and is held."""
        return self.demanded and not (holds_valid_token and self.token_suffices)


def decide(votes: Sequence[StepUpVote]) -> Decision:
    """The decision over ``stepup_check`` votes: step-up is demanded when any vote requires it,
    and a held token suffices only when every such vote accepts an existing token."""
    demanding = [v for v in votes if v.required]
    return Decision(
        demanded=bool(demanding),
        token_suffices=all(v.accept_existing_token for v in demanding),
        reasons=tuple(v.reason for v in demanding),
    )


class Gate:
    """``check`` and ``require_scope`` over the votes, the user's credentials and the tokens."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        policies: ScopePolicies,
        routing: Routing,
        tokens: TokenStore,
        store: Store,
        emit: Callable[[AuditEvent], Awaitable[None]],
        event: Callable[..., AuditEvent],
        keyring: KeyRing | None = None,
    ) -> None:
        self.pm = pm
        self.clock: Clock = tokens.clock
        self.keyring = keyring
        self.policies = policies
        self.routing = routing
        self.tokens = tokens
        self.store = store
        self._emit = emit
        self._event = event

    async def votes(self, principal: Principal, scope: str) -> list[StepUpVote]:
        """Every ``stepup_check`` answer; PluginError when none answered or one is not a vote."""
        policy = self.policies.policy_for(scope)
        votes = [v for v in self.pm.hook.stepup_check(principal=principal, scope=scope, policy=policy) if v]
        if not votes:
            raise PluginError("no stepup_check implementation answered")
        odd = next((v for v in votes if not isinstance(v, StepUpVote)), None)
        if odd is not None:  # fails closed like an exception: "required"
            raise PluginError(f"a stepup_check implementation answered a {type(odd).__name__}, not a StepUpVote")
        return votes

    async def check(self, principal: Principal, scope: str, token: str | None = None) -> CheckResult:
        """The StepUpCheck. Fails closed: any error on this path answers "required"."""
        scope = self.policies.validate(scope)
        try:
            votes = await self.votes(principal, scope)
            policy = self.policies.policy_for(scope)
            grant = await self.tokens.peek(token, principal, scope, self.grant_check(policy)) if token else None
            satisfied = grant is not None or await self._sign_in_available(principal, scope, policy)
            return await self._result(principal, scope, decide(votes), satisfied)
        except Exception as exc:  # noqa: BLE001 - fails closed, logged in _failed_closed
            return await self._failed_closed(principal, scope, exc)

    async def require_scope(self, principal: Principal, scope: str, token: str | None) -> Grant | None:
        """Gate an action: the grant that covers ``scope`` (single-use tokens are consumed), None
        when the scope needs no step-up, else :class:`StepUpRequired` carrying the check.
        :class:`StoreUnavailable` propagates (the server answers 503): never a grant."""
        scope = self.policies.validate(scope)
        decision: Decision | None = None
        failure: BaseException = PluginError("no decision")
        try:
            decision = decide(await self.votes(principal, scope))
        except Exception as exc:  # noqa: BLE001 - a failing vote means required
            log.warning("stepup_check failed for %s: %s", scope, exc)
            failure = exc
        if decision is not None and not decision.demanded:
            return None
        presented: Presentation | None = None
        if decision is not None and decision.token_suffices:
            policy = self.policies.policy_for(scope)
            check = self.grant_check(policy)
            presented = await self.tokens.present(token, principal, scope, consume=True, check=check) if token else None
            grant = presented.grant if presented is not None else None
            if grant is None:
                grant = await self._use_sign_in(principal, scope, policy)
            if grant is not None:
                await self._emit(
                    self._event(
                        "grant_used", "success", principal, method=grant.method, scopes=(scope,),
                        details={"singleUse": grant.single_use, "tokenId": presented and presented.token_id},
                    )
                )
                return grant
        await self.store.ping()
        await self._grant_refused(principal, scope, token, presented)
        if decision is None:
            result = await self._failed_closed(principal, scope, failure)
        else:
            try:
                result = await self._result(principal, scope, decision, False)
            except Exception as exc:  # noqa: BLE001 - fails closed, logged in _failed_closed
                result = await self._failed_closed(principal, scope, exc)
        raise self._refusal(f"step-up authentication is required for {scope}", scope, result)

    async def require_token(self, principal: Principal, scope: str, token: str | None) -> Grant:
        """A valid token for ``scope``, whatever the votes (managing credentials needs one)."""
        check = self.grant_check(self.policies.policy_for(scope))
        presented = await self.tokens.present(token, principal, scope, consume=True, check=check) if token else None
        if presented is None or presented.grant is None:
            await self._grant_refused(principal, scope, token, presented)
            message = f"this action needs an elevated access token for {scope}"
            raise await self.step_up_required(principal, scope, message)
        return presented.grant

    async def step_up_required(self, principal: Principal, scope: str, message: str) -> StepUpRequired:
        """The refusal for ``scope``: the check result, and the policy's RFC 9470 parameters."""
        return self._refusal(message, scope, await self.check(principal, scope))

    def _refusal(self, message: str, scope: str, result: CheckResult) -> StepUpRequired:
        policy = self.policies.policy_for(scope)
        return StepUpRequired(
            message, scope, check=unstructure(result), acr_values=policy.acr_values, max_age=policy.max_age
        )

    def grant_check(self, policy: ScopePolicy) -> GrantCheck:
        """What a grant must also meet under ``policy``: its class and age, and a signed grant's
        key still published."""

        async def check(grant: Grant) -> bool:
            if not grant_satisfies(policy, grant, self.clock.now()):
                return False
            if grant.key_id is None:
                return True
            return self.keyring is not None and await self.keyring.is_published(grant.key_id)

        return check

    @staticmethod
    def _sign_in_key(principal: Principal, scope: str) -> str:
        return make_key("sign-in-used", principal.user_id, principal.session_id, repr(principal.auth_time), scope)

    async def _sign_in_available(self, principal: Principal, scope: str, policy: ScopePolicy) -> bool:
        """The session's sign-in stands for the step-up now (on a single-use scope: not yet used)."""
        if not sign_in_satisfies(policy, principal, self.clock.now()):
            return False
        if policy.token_behavior is not TokenBehavior.SINGLE_USE:
            return True
        return await self.store.get(self._sign_in_key(principal, scope)) is None

    async def _use_sign_in(self, principal: Principal, scope: str, policy: ScopePolicy) -> Grant | None:
        """A grant standing for a fresh, strong enough sign-in (``accept_sign_in``). On a
        single-use scope the sign-in is spent atomically by its first use."""
        now = self.clock.now()
        if not sign_in_satisfies(policy, principal, now):
            return None
        assert principal.auth_time is not None and policy.max_age is not None
        single_use = policy.token_behavior is TokenBehavior.SINGLE_USE
        if single_use:
            ttl = max(policy.max_age - (now - principal.auth_time), 1.0) + _SIGN_IN_GRACE
            if not await self.store.add(self._sign_in_key(principal, scope), "1", ttl=ttl):
                return None
        return Grant(
            token_hash="",
            user_id=principal.user_id,
            session_id=principal.session_id,
            scopes=(scope,),
            method="sign-in",
            issued_at=principal.auth_time,
            expires_at=principal.auth_time + policy.max_age,
            single_use=single_use,
            acr=principal.acr,
            amr=principal.amr,
            auth_time=principal.auth_time,
        )

    async def _grant_refused(
        self, principal: Principal, scope: str, token: str | None, presented: Presentation | None
    ) -> None:
        """Audit an action refused although a token was presented: ``token_not_valid`` (worth
        watching: a token presented by another user, in another session or for another scope is
        how a stolen or leaked one shows) or ``fresh_verification_required`` (a vote refused
        held tokens, so the token was not looked at). ``details.refusal`` says why a token was
        not valid (a :class:`~stepup_core.tokens.Refusal`), ``details.tokenId`` names it without
        being it (:func:`~stepup_core.tokens.token_id`). A call without a token, the usual first
        call before a step-up, is not an event."""
        if not token:
            return
        if presented is None or presented.refusal is None:
            reason, outcome = "fresh_verification_required", "info"
            details: dict[str, str | None] = {"tokenId": self.tokens.id_of(token)}
        else:
            reason, outcome = "token_not_valid", "failure"
            details = {"refusal": presented.refusal, "tokenId": presented.token_id}
        await self._emit(
            self._event("grant_refused", outcome, principal, scopes=(scope,), reason=reason, details=details)
        )

    async def _result(self, principal: Principal, scope: str, decision: Decision, holds_token: bool) -> CheckResult:
        credentials = await self.routing.user_credentials(principal)
        route, eligible, default_id = self.routing.route(principal, credentials)
        required = decision.required(holds_token)
        return CheckResult(
            scope=scope,
            is_required=required,
            route=route,
            credentials=tuple(c.view() for c in eligible),
            default_credential_id=default_id,
            reasons=decision.reasons if required else (),
            methods=tuple(dict.fromkeys(c.method for c in eligible)),
        )

    async def _failed_closed(self, principal: Principal, scope: str, exc: BaseException) -> CheckResult:
        log.warning("stepup check for %s failed closed: %s", scope, exc, exc_info=exc)
        await self._emit(self._event("check_failed", "failure", principal, scopes=(scope,), reason=type(exc).__name__))
        return CheckResult(scope=scope, is_required=True, route=Route.REAUTH, reasons=("check_failed",))
