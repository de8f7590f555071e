"""The gate: is step-up required for a scope, and does a token let this request through?

``check`` (``POST /check``) and ``require_scope`` (a protected route) share one pure decision,
:func:`decide`, over the ``stepup_check`` votes; each runs the hook once. Any error on the
check path fails closed: "step-up required", never a grant.

A token bound to transaction details lets through only a request stating details with the same
canonical form (:mod:`stepup_core.transaction`); its binding is checked before it is consumed,
so a presentation with other details uses nothing up.

RFC 9470: a grant counts only when its authentication class and age meet the scope's policy
(``acr_values``, ``max_age``) and, for a signed grant, its key is still published; a policy with
``accept_sign_in`` takes a fresh, strong enough sign-in as the step-up (spent by its first use
on a single-use scope). A refusal carries the policy's ``acr_values`` and ``max_age``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import pluggy

from .authn import grant_satisfies, sign_in_satisfies
from .clock import Clock
from .default_plugins import policy as policy_vote
from .errors import PluginError, StepUpRequired, TransactionMismatch
from .models import AuditEvent, Challenge, CheckResult, Grant, Principal, Route, StepUpVote, TokenBehavior, Transaction
from .plugins import call_hook, direct_impls
from .routing import Routing
from .scopes import ScopePolicies, ScopePolicy
from .serialization import unstructure
from .signing import KeyRing
from .store.base import Store, make_key
from .tokens import GrantCheck, Presentation, Refusal, TokenStore
from .transaction import audit_details, bind, ensure_same_transaction, transaction_hash

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
    reasons: list[str] = []
    token_suffices = True
    for vote in votes:  # a loop, not three generators: this runs on every protected request
        if vote.required:
            reasons.append(vote.reason)
            token_suffices = token_suffices and vote.accept_existing_token
    return Decision(demanded=bool(reasons), token_suffices=token_suffices, reasons=tuple(reasons))


#: What :func:`decide` makes of the built-in vote alone, by ``policy.required``.
_BY_POLICY_ALONE = {required: decide((vote,)) for required, vote in policy_vote.VOTES.items()}


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

    def votes(self, principal: Principal, scope: str) -> list[StepUpVote]:
        """Every ``stepup_check`` answer; PluginError when none answered or one is not a vote."""
        policy = self.policies.policy_for(scope)
        votes = [v for v in call_hook(self.pm, "stepup_check", principal=principal, scope=scope, policy=policy) if v]
        if not votes:
            raise PluginError("no stepup_check implementation answered")
        for vote in votes:
            if not isinstance(vote, StepUpVote):  # fails closed like an exception: "required"
                raise PluginError(f"a stepup_check implementation answered a {type(vote).__name__}, not a StepUpVote")
        return votes

    def decision(self, principal: Principal, scope: str) -> Decision:
        """:func:`decide` over the votes. While the built-in vote is the only one (a function
        of the scope's policy alone), its decision is known without running the hook."""
        direct = direct_impls(self.pm, "stepup_check")
        if direct is not None and len(direct) == 1 and direct[0].function is policy_vote.stepup_check:
            return _BY_POLICY_ALONE[bool(self.policies.policy_for(scope).required)]
        return decide(self.votes(principal, scope))

    def bind(self, scopes: Sequence[str], details: object) -> Transaction | None:
        """Validate, hash and summarise transaction details for a step-up to ``scopes`` (None
        for none)."""
        return None if details is None else bind(self.pm, scopes, details)

    def binding(self, challenge: Challenge | None, scopes: Sequence[str], details: object) -> Transaction | None:
        """The transaction a verification is bound to: its challenge's (``details``, when sent,
        must be the same: :class:`TransactionMismatch`), else, for a method that needs no
        challenge, the ``details`` it sent."""
        if challenge is None:
            return self.bind(scopes, details)
        ensure_same_transaction(challenge.transaction, details, challenge.id)
        return challenge.transaction

    async def check(
        self, principal: Principal, scope: str, token: str | None = None, transaction: object = None
    ) -> CheckResult:
        """The StepUpCheck. Fails closed: any error on this path answers "required".

        With ``transaction`` (details), a held token satisfies the check only when it is bound
        to the same details; without, only when it is bound to none. Invalid details raise
        :class:`~stepup_core.errors.InvalidTransaction`.
        """
        scope = self.policies.validate(scope)
        bound = self.bind((scope,), transaction)
        try:
            decision = self.decision(principal, scope)
            policy = self.policies.policy_for(scope)
            expected = bound.hash if bound else None
            grant = await self.tokens.peek(token, principal, scope, self.grant_check(policy), expected)
            # A sign-in never stands for a bound step-up: the person has not seen the details.
            satisfied = grant is not None or (bound is None and await self._sign_in_available(principal, scope, policy))
            return await self._result(principal, scope, decision, satisfied, bound)
        except Exception as exc:  # noqa: BLE001 - fails closed, logged in _failed_closed
            return await self._failed_closed(principal, scope, exc, bound)

    async def require_scope(
        self, principal: Principal, scope: str, token: str | None, transaction: object = None
    ) -> Grant | None:
        """Gate an action: the grant that covers ``scope`` (single-use tokens are consumed), None
        when the scope needs no step-up, else :class:`StepUpRequired` carrying the check.
        :class:`StoreUnavailable` propagates (the server answers 503): never a grant.

        ``transaction``: the details of the action this request performs. A token bound to
        other details (or to details when this action states none) is refused with
        :class:`~stepup_core.errors.TransactionMismatch` and not consumed; an unbound token for
        an action that states details lets nothing through (step-up required, with the details
        in the check's ``transaction``).
        """
        scope = self.policies.validate(scope)
        expected = transaction_hash(transaction) if transaction is not None else None
        decision: Decision | None = None
        failure: BaseException | None = None
        try:
            decision = self.decision(principal, scope)
        except Exception as exc:  # noqa: BLE001 - a failing vote means required
            log.warning("stepup_check failed for %s: %s", scope, exc)
            failure = exc
        if decision is not None and not decision.demanded:
            return None
        presented: Presentation | None = None
        if decision is not None and decision.token_suffices:
            policy = self.policies.policy_for(scope)
            check = self.grant_check(policy)
            presented = (
                await self.tokens.present(token, principal, scope, consume=True, check=check, transaction_hash=expected)
                if token
                else None
            )
            grant = presented.grant if presented is not None else None
            if grant is None and expected is None:
                grant = await self._use_sign_in(principal, scope, policy)
            if grant is not None:
                await self._emit(
                    self._event(
                        "grant_used",
                        "success",
                        principal,
                        method=grant.method,
                        scopes=(scope,),
                        details={"singleUse": grant.single_use, "tokenId": presented and presented.token_id}
                        | audit_details(grant.transaction_hash),
                    )
                )
                return grant
        await self.store.ping()
        await self._grant_refused(principal, scope, token, presented, expected)
        self._refuse_bound(presented, scope, transaction, expected)
        bound = self.bind((scope,), transaction)
        if decision is None:
            result = await self._failed_closed(principal, scope, failure or PluginError("no decision"), bound)
        else:
            try:
                result = await self._result(principal, scope, decision, False, bound)
            except Exception as exc:  # noqa: BLE001 - fails closed, logged in _failed_closed
                result = await self._failed_closed(principal, scope, exc, bound)
        raise self._refusal(f"step-up authentication is required for {scope}", scope, result)

    async def require_token(self, principal: Principal, scope: str, token: str | None) -> Grant:
        """A valid token for ``scope``, whatever the votes (managing credentials needs one). A
        token bound to transaction details is refused (:class:`TransactionMismatch`)."""
        check = self.grant_check(self.policies.policy_for(scope))
        presented = await self.tokens.present(token, principal, scope, consume=True, check=check) if token else None
        if presented is None or presented.grant is None:
            await self._grant_refused(principal, scope, token, presented, None)
            self._refuse_bound(presented, scope, None, None)
            message = f"this action needs an elevated access token for {scope}"
            raise await self.step_up_required(principal, scope, message)
        return presented.grant

    async def step_up_required(
        self, principal: Principal, scope: str, message: str, transaction: object = None
    ) -> StepUpRequired:
        """The refusal for ``scope`` (and the action's ``transaction`` details): the check result,
        and the policy's RFC 9470 parameters."""
        return self._refusal(message, scope, await self.check(principal, scope, transaction=transaction))

    def _refusal(self, message: str, scope: str, result: CheckResult) -> StepUpRequired:
        policy = self.policies.policy_for(scope)
        if result.transaction is not None:
            message += " with this action's transaction details"
        return StepUpRequired(
            message, scope, check=unstructure(result), acr_values=policy.acr_values, max_age=policy.max_age
        )

    async def refuse_other_binding(
        self, principal: Principal, scope: str, token: str, transaction: object = None
    ) -> None:
        """Look at ``token`` without consuming it: bound to other details than ``transaction``
        (or to some, where the action states none), it is refused as :meth:`require_scope`
        refuses it (:class:`TransactionMismatch`, audited)."""
        expected = transaction_hash(transaction) if transaction is not None else None
        presented = await self.tokens.present(token, principal, scope, consume=False, transaction_hash=expected)
        if presented.refusal == Refusal.TRANSACTION_MISMATCH and presented.bound_to is not None:
            await self._grant_refused(principal, scope, token, presented, expected)
            self._refuse_bound(presented, scope, transaction, expected)

    def _refuse_bound(
        self, presented: Presentation | None, scope: str, transaction: object, expected: str | None
    ) -> None:
        """A token bound to other details than the action's (or to details where the action
        states none): :class:`TransactionMismatch`, naming the request's details. An unbound
        token where details are stated is refused as any other (step-up required)."""
        if presented is None or presented.refusal != Refusal.TRANSACTION_MISMATCH or presented.bound_to is None:
            return
        raise self.transaction_mismatch(scope, transaction)

    def transaction_mismatch(self, scope: str, transaction: object = None) -> TransactionMismatch:
        """The refusal of a token bound to other transaction details than ``transaction`` (None:
        the action states none): 403 ``transaction_mismatch``, with the action's own details."""
        return TransactionMismatch(
            "this elevated access token is bound to other transaction details than this request carries; "
            "it was not used: step up again for these details"
            if transaction is not None
            else "this elevated access token is bound to one transaction, and this action states none; it was not used",
            scope=scope,
            **({"transaction": self.bind((scope,), transaction)} if transaction is not None else {}),
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
        self,
        principal: Principal,
        scope: str,
        token: str | None,
        presented: Presentation | None,
        expected: str | None,
    ) -> None:
        """Audit an action refused although a token was presented: ``token_not_valid`` (worth
        watching: a token presented by another user, in another session or for another scope is
        how a stolen or leaked one shows), ``transaction_mismatch`` (a token bound to other
        transaction details than the action's: ``details.transactionHash`` is the action's,
        ``grantTransactionHash`` the token's, either None for none) or
        ``fresh_verification_required`` (a vote refused held tokens, so the token was not looked
        at). ``details.refusal`` says why a token was not valid (a
        :class:`~stepup_core.tokens.Refusal`), ``details.tokenId`` names it without being it
        (:func:`~stepup_core.tokens.token_id`). A call without a token, the usual first call
        before a step-up, is not an event."""
        if not token:
            return
        details: dict[str, Any]
        if presented is None or presented.refusal is None:
            reason, outcome = "fresh_verification_required", "info"
            details = {"tokenId": self.tokens.id_of(token)}
        elif presented.refusal == Refusal.TRANSACTION_MISMATCH:
            reason, outcome = "transaction_mismatch", "failure"
            details = {
                "refusal": presented.refusal,
                "tokenId": presented.token_id,
                "transactionHash": expected,
                "grantTransactionHash": presented.bound_to,
            }
        else:
            reason, outcome = "token_not_valid", "failure"
            details = {"refusal": presented.refusal, "tokenId": presented.token_id}
        await self._emit(
            self._event("grant_refused", outcome, principal, scopes=(scope,), reason=reason, details=details)
        )

    async def _result(
        self, principal: Principal, scope: str, decision: Decision, holds_token: bool, bound: Transaction | None = None
    ) -> CheckResult:
        credentials = await self.routing.user_credentials(principal, shared=True)  # read for views only
        route, eligible, default_id = self.routing.route(principal, credentials)
        eligible = self.routing.able_to_bind(scope, bound, eligible)
        required = decision.required(holds_token)
        return CheckResult(
            scope=scope,
            is_required=required,
            route=route,
            credentials=tuple(c.view() for c in eligible),
            default_credential_id=default_id,
            reasons=decision.reasons if required else (),
            methods=tuple(dict.fromkeys(c.method for c in eligible)),
            transaction=bound,
        )

    async def _failed_closed(
        self, principal: Principal, scope: str, exc: BaseException, bound: Transaction | None = None
    ) -> CheckResult:
        log.warning("stepup check for %s failed closed: %s", scope, exc, exc_info=exc)
        await self._emit(self._event("check_failed", "failure", principal, scopes=(scope,), reason=type(exc).__name__))
        return CheckResult(
            scope=scope, is_required=True, route=Route.REAUTH, reasons=("check_failed",), transaction=bound
        )
