"""The built-in StepUpCheck: vote by the scope policy. Registered ``trylast``."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..models import Principal, StepUpVote
from ..scopes import ScopePolicy


@hookimpl(trylast=True)
def stepup_check(principal: Principal, scope: str, policy: ScopePolicy) -> StepUpVote:
    if policy.required:
        return StepUpVote(required=True, reason="scope_policy")
    return StepUpVote(required=False, reason="scope_not_guarded")
