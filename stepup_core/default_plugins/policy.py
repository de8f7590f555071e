"""The built-in StepUpCheck: vote by the scope policy. Registered ``trylast``."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..models import Principal, StepUpVote
from ..scopes import ScopePolicy

# Votes are frozen: the two answers are made once (this runs on every protected request).
_REQUIRED = StepUpVote(required=True, reason="scope_policy")
_NOT_GUARDED = StepUpVote(required=False, reason="scope_not_guarded")


@hookimpl(trylast=True)
def stepup_check(principal: Principal, scope: str, policy: ScopePolicy) -> StepUpVote:
    return _REQUIRED if policy.required else _NOT_GUARDED
