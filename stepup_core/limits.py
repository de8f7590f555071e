"""The lockout policy, attempt budgets and rate limits: every count the core keeps to stop
guessing, in one place.

- **Lockout**: ``lockout_failures`` failed verifications per user within ``lockout_window``
  seconds lock the user out of verifying (``locked_out``, 429 with ``retryAfter``).
- **Attempt budget**: ``max_attempts`` answers per challenge (or, for methods that need no
  challenge, per credential and challenge lifetime); then ``attempts_exhausted``.
- **Rate limits**: fixed windows (``begin_limits`` of a method, and ``ctx.hit_rate_limit``).

Every answer to a verifier runs inside :meth:`Limits.attempt`, which takes the attempt's place
in the budget and the user's lockout place *before* the verifier looks at it, both or neither
in one atomic store operation (``reserve``), so answers sent at once cannot overrun either
count; afterwards a success or an error that is not a wrong answer gives the places back (one
``settle``, which a successful verification shares with its grant), and a wrong answer is
recorded with its audit events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs

from .config import LimitsConfig
from .errors import AttemptsExhausted, LockedOut, PluginError, RateLimited, StepUpError, VerificationFailed
from .models import AuditEvent, Challenge, Credential, Principal
from .store.base import Counter, Store, make_key
from .verifier import RateLimit

log = logging.getLogger("stepup")


def _failures_key(user_id: str) -> str:
    return make_key("failures", user_id)


@attrs.frozen
class Budget:
    """An attempt budget: a store counter and how long it lives."""

    key: str
    ttl: float
    #: A success gives its attempt back (per-credential budgets of challenge-less methods).
    refund_on_success: bool = False


@attrs.define
class Places:
    """The places an attempt holds, handed to the ``async with`` body of :meth:`Limits.attempt`.

    ``release`` lists the counters a success gives back. A caller that gives them back itself,
    in the same store step as its own writes (a verification with its grant), sets ``deferred``
    in the body; otherwise the context gives them back on success."""

    release: list[str] = attrs.field(factory=list)
    deferred: bool = False


@attrs.define
class AttemptScope:
    """What one attempt is about, for the failure's audit events."""

    principal: Principal
    method: str
    challenge: Challenge | None = None
    credential: Credential | None = None


class Limits:
    """Counts in the store; ``emit`` sends the audit events of failures and lockouts."""

    def __init__(
        self,
        store: Store,
        config: LimitsConfig,
        emit: Callable[[AuditEvent], Awaitable[None]],
        event: Callable[..., AuditEvent],
    ) -> None:
        self.store = store
        self.config = config
        self._emit = emit
        self._event = event

    # --- lockout ------------------------------------------------------------------------

    def _locked_out(self) -> LockedOut:
        return LockedOut("too many failed verifications; try again later", retry_after=self.config.lockout_window)

    async def ensure_not_locked(self, principal: Principal) -> None:
        failures = int(await self.store.get(_failures_key(principal.user_id)) or 0)
        if failures >= self.config.lockout_failures:
            raise self._locked_out()

    # --- attempt budgets ----------------------------------------------------------------

    async def _reserve(
        self, principal: Principal, budget: Budget | None, *, lockout: bool, per_challenge: bool
    ) -> tuple[int, int | None]:
        """Take one place in ``budget`` and (when ``lockout``) one in the user's lockout window,
        both or neither in one atomic step; (the attempt's number, its lockout place)."""
        counters = []
        if budget is not None:
            counters.append(Counter(budget.key, self.config.max_attempts, budget.ttl))
        if lockout:
            counters.append(
                Counter(_failures_key(principal.user_id), self.config.lockout_failures, self.config.lockout_window)
            )
        if not counters:
            return 1, None
        reservation = await self.store.reserve(counters)
        counts = list(reservation.counts)
        place = counts.pop() if lockout else None
        used = counts.pop() if budget is not None else 1
        if not reservation.granted:
            if place is not None and place >= self.config.lockout_failures:
                raise self._locked_out()
            raise AttemptsExhausted(
                "too many wrong answers for this challenge; start a new one"
                if per_challenge
                else "too many wrong answers; wait before trying again"
            )
        return used, place

    # --- one attempt --------------------------------------------------------------------

    @asynccontextmanager
    async def attempt(
        self,
        scope: AttemptScope,
        budget: Budget | None,
        *,
        crash: Callable[[], StepUpError],
        crash_counts: bool = True,
        reserve_lockout: bool = True,
    ) -> AsyncIterator[Places]:
        """Reserve, run the verifier's check in the ``async with`` body, then settle.

        - before: one place in ``budget`` and one in the user's lockout window, both or neither
          in one store operation (AttemptsExhausted or LockedOut when one is full);
        - a wrong answer (VerificationFailed): recorded with its events; the error raised says
          how many attempts remain, or becomes ``attempts_exhausted`` on the last one;
        - any other stepup error (a provider outage, a policy refusal): both places given back;
        - a crash: logged, and raised as ``crash()``; it counts as a wrong answer when
          ``crash_counts``, else both places are given back;
        - a success: the lockout place given back, and the budget's when it says so; in one
          step with the caller's own writes when the body sets ``places.deferred``
          (:class:`Places`).

        With ``reserve_lockout`` False the lockout place is taken only when the answer is wrong
        (enrolment completions and redirect callbacks, which :meth:`ensure_not_locked` guards).
        """
        used, place = await self._reserve(
            scope.principal, budget, lockout=reserve_lockout, per_challenge=scope.challenge is not None
        )
        held = ([budget.key] if budget is not None else []) + (
            [_failures_key(scope.principal.user_id)] if place is not None else []
        )
        release = [_failures_key(scope.principal.user_id)] if place is not None else []
        if budget is not None and budget.refund_on_success:
            release.append(budget.key)
        places = Places(release)
        try:
            yield places
        except VerificationFailed as exc:
            raise await self._record_failure(scope, exc, used, place) from None
        except StepUpError:
            await self._give_back(held)
            raise
        except Exception as exc:
            log.exception("method %s failed while checking an answer", scope.method)
            failure = crash()
            if not crash_counts:
                await self._give_back(held)
                raise failure from exc
            raise await self._record_failure(scope, failure, used, place) from exc
        if not places.deferred:
            await self._give_back(places.release)

    async def _give_back(self, keys: list[str]) -> None:
        if keys:
            await self.store.settle(release=keys)

    async def _record_failure(
        self, scope: AttemptScope, exc: StepUpError, used: int, place: int | None
    ) -> StepUpError:
        """Count the failure toward the lockout unless its place was reserved, emit the
        failure's events; the error to raise (``attempts_exhausted`` when this failure used up
        the budget)."""
        principal, challenge = scope.principal, scope.challenge
        if place is None:
            place = await self.store.incr(_failures_key(principal.user_id), ttl=self.config.lockout_window)
        remaining = max(self.config.max_attempts - used, 0)
        await self._emit(
            self._event(
                "verification_failed",
                "failure",
                principal,
                method=scope.method,
                challenge_id=challenge.id if challenge else None,
                credential_id=scope.credential.id if scope.credential else None,
                reason=exc.code,
                details={"attempts": used, "message": exc.message},
            )
        )
        if place == self.config.lockout_failures:
            await self._emit(self._event("locked_out", "warning", principal, method=scope.method))
        if remaining == 0:
            await self._emit(
                self._event("attempts_exhausted", "warning", principal, method=scope.method,
                            challenge_id=challenge.id if challenge else None)
            )
            advice = "start a new challenge" if challenge is not None else "wait before trying again"
            return AttemptsExhausted(f"{exc.message}; no attempts left, {advice}")
        exc.details.setdefault("attemptsRemaining", remaining)
        return exc

    # --- rate limits --------------------------------------------------------------------

    async def hit_rate_limit(self, key: str, limit: RateLimit) -> None:
        """Count one event under ``key`` in ``limit``'s fixed window; RateLimited past the limit.
        Lent to verifiers as ``ctx.hit_rate_limit`` for limits the core cannot key for them."""
        count = await self.store.incr(make_key("rate", key, str(limit.window)), ttl=limit.window)
        if count > limit.limit:
            # The key's first part names the limit ("begin", "otp-enroll"); the rest, which
            # may hold ids or addresses, stays out of the event.
            await self._emit(
                self._event(
                    "rate_limited", "warning",
                    details={"limit": key.split(":", 1)[0], "max": limit.limit, "window": limit.window},
                )
            )
            raise RateLimited(
                f"at most {limit.limit} per {limit.window:g} s; wait before asking again",
                retry_after=limit.window,
            )


def plugin_crash(method: str, what: str) -> Callable[[], StepUpError]:
    """The error of a method that crashed in ``what``: a PluginError (the cause is logged)."""
    return lambda: PluginError(f"method {method} failed {what}")
