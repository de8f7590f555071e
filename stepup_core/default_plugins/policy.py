"""The built-in StepUpCheck: vote by the scope policy. Registered ``trylast``."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..models import Principal, StepUpVote
from ..scopes import ScopePolicy

#: The two answers, by ``policy.required`` (votes are frozen: made once). While this is the
#: only implementation, the gate decides from the policy without calling it.
VOTES = {
    True: StepUpVote(required=True, reason="scope_policy"),
    False: StepUpVote(required=False, reason="scope_not_guarded"),
}


@hookimpl(trylast=True)
def stepup_check(principal: Principal, scope: str, policy: ScopePolicy) -> StepUpVote:
    return VOTES[bool(policy.required)]
