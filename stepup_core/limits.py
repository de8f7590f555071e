"""The lockout policy, attempt budgets and rate limits: every count the core keeps to stop
guessing, in one place.

- **Lockout**: ``lockout_failures`` failed verifications per user within ``lockout_window``
  seconds lock the user out of verifying (``locked_out``, 429 with ``retryAfter``).
- **Attempt budget**: ``max_attempts`` answers per challenge (or, for methods that need no
  challenge, per credential and challenge lifetime); then ``attempts_exhausted``.
- **Rate limits**: fixed windows (``begin_limits`` of a method, every method's
  ``begin_limit`` per user, and ``ctx.hit_rate_limit``).
- **Live records**: at most ``max_live_challenges`` open challenges and
  ``max_live_enrollments`` pending enrolments per user.

Every answer to a verifier runs inside :meth:`Limits.attempt`, which takes the attempt's place
in the budget and the user's lockout place *before* the verifier looks at it, both or neither
in one atomic store operation (``reserve``), so answers sent at once cannot overrun either
count; afterwards a success or an error that is not a wrong answer gives the places back (one
``settle``, which a successful verification shares with its grant), and a wrong answer is
recorded with its audit events.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs

from .config import LimitsConfig
from .errors import AttemptsExhausted, LockedOut, PluginError, RateLimited, StepUpError, VerificationFailed
from .models import AuditEvent, Challenge, ChallengePurpose, Credential, Principal
from .store.base import GRACE_SECONDS, Counter, Store, make_key
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

    async def failures(self, user_id: str) -> int:
        """Failed verifications counted toward the user's lockout in the current window."""
        return int(await self.store.get(_failures_key(user_id)) or 0)

    async def unlock(self, user_id: str) -> bool:
        """Clear the user's lockout window (an operator's action); True if failures were counted."""
        return await self.store.delete(_failures_key(user_id))

    # --- attempt budgets ----------------------------------------------------------------

    async def _reserve(self, principal: Principal, budget: Budget | None, *, per_challenge: bool) -> tuple[int, int]:
        """Take one place in ``budget`` and one in the user's lockout window, both or neither in
        one atomic step; (the attempt's number, its lockout place)."""
        lockout = Counter(_failures_key(principal.user_id), self.config.lockout_failures, self.config.lockout_window)
        counters = [lockout] if budget is None else [Counter(budget.key, self.config.max_attempts, budget.ttl), lockout]
        reservation = await self.store.reserve(counters)
        place = reservation.counts[-1]
        used = 1 if budget is None else reservation.counts[0]
        if not reservation.granted:
            if place >= self.config.lockout_failures:
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
    ) -> AsyncIterator[Places]:
        """Reserve, run the verifier's check in the ``async with`` body, then settle.

        - before: one place in ``budget`` and one in the user's lockout window, both or neither
          in one store operation (AttemptsExhausted or LockedOut when one is full);
        - a wrong answer (VerificationFailed): recorded with its events; the error raised says
          how many attempts remain, or becomes ``attempts_exhausted`` on the last one;
        - any other stepup error (a provider outage, a policy refusal): both places given back;
        - a crash: logged, and raised as ``crash()``; it counts as a wrong answer when
          ``crash_counts``, else both places are given back;
        - a success: the lockout place given back (a window left with no failure closes, so the
          next one starts at the next answer), and the budget's when it says so; in one step
          with the caller's own writes when the body sets ``places.deferred`` (:class:`Places`).

        Every answer runs here (a verification, an enrolment's confirmation, a redirect's
        callback): checking the lockout and counting the failure afterwards would let answers
        sent at once over many challenges all be checked before any failure is counted.
        """
        used, place = await self._reserve(scope.principal, budget, per_challenge=scope.challenge is not None)
        lockout_key = _failures_key(scope.principal.user_id)
        held = [lockout_key] if budget is None else [budget.key, lockout_key]
        places = Places([lockout_key] + ([budget.key] if budget is not None and budget.refund_on_success else []))
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
        await self.store.settle(release=keys)

    async def _record_failure(self, scope: AttemptScope, exc: StepUpError, used: int, place: int) -> StepUpError:
        """Emit the events of a wrong answer whose places in the budget (``used``) and in the
        user's lockout (``place``) were reserved before it was checked; the error to raise
        (``attempts_exhausted`` when this failure used up the budget)."""
        principal, challenge = scope.principal, scope.challenge
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
                self._event(
                    "attempts_exhausted",
                    "warning",
                    principal,
                    method=scope.method,
                    challenge_id=challenge.id if challenge else None,
                )
            )
            advice = "start a new challenge" if challenge is not None else "wait before trying again"
            return AttemptsExhausted(f"{exc.message}; no attempts left, {advice}")
        exc.details.setdefault("attemptsRemaining", remaining)
        return exc

    # --- live records and begins --------------------------------------------------------

    async def limit_begin(self, principal: Principal, method: str) -> None:
        """Every method's begin limit, per user: challenges and enrolments alike."""
        limit = RateLimit(self.config.begin_limit, self.config.begin_window)
        await self.hit_rate_limit(make_key("begin-user", method, principal.user_id), limit)

    async def claim_live_slot(self, record: Challenge) -> None:
        """Take one of the user's places for open challenges (or pending enrolments) before the
        record is made, or refuse with RateLimited when all are held.

        Each place is a store record claimed with add-if-absent and living exactly as long as
        the challenge's record (its lifetime plus the grace period), so the cap holds across
        processes with no count to drift; using the challenge up frees its place at once
        (:func:`free_live_slot`)."""
        enrolment = record.purpose is ChallengePurpose.ENROLLMENT
        limit = self.config.max_live_enrollments if enrolment else self.config.max_live_challenges
        now = record.created_at
        ttl = max(record.expires_at - now, 0) + GRACE_SECONDS
        start = secrets.randbelow(limit)  # probing from a random place finds a free one at once
        for i in range(limit):
            key = _live_slot_key(record, (start + i) % limit)
            if await self.store.add(key, repr(now + ttl), ttl=ttl):
                record.live_slot = key
                return
        held = [float(v) for v in [await self.store.get(_live_slot_key(record, i)) for i in range(limit)] if v]
        retry_after = max(min(held, default=now + ttl) - now, 1.0)
        await self._emit(
            self._event(
                "rate_limited",
                "warning",
                user_id=record.user_id,
                method=record.method,
                details={"limit": f"live-{record.purpose.value}", "max": limit},
            )
        )
        what = "enrolments pending" if enrolment else "step-up challenges open"
        raise RateLimited(
            f"this user already has {limit} {what}; complete one or wait until one expires", retry_after=retry_after
        )

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
                    "rate_limited",
                    "warning",
                    details={"limit": key.split(":", 1)[0], "max": limit.limit, "window": limit.window},
                )
            )
            raise RateLimited(
                f"at most {limit.limit} per {limit.window:g} s; wait before asking again",
                retry_after=limit.window,
            )


def _live_slot_key(record: Challenge, index: int) -> str:
    return make_key("live", record.purpose.value, record.user_id, str(index))


async def free_live_slot(store: Store, record: Challenge) -> None:
    """Give back the place a used-up (or never saved) challenge or enrolment held."""
    if record.live_slot is not None:
        await store.delete(record.live_slot)


def plugin_crash(method: str, what: str) -> Callable[[], StepUpError]:
    """The error of a method that crashed in ``what``: a PluginError (the cause is logged)."""
    return lambda: PluginError(f"method {method} failed {what}")
