"""RFC 9470 for stepup: how strong and how recent an authentication is, and when it is enough.

- A grant's ``amr`` (RFC 8176 method references) comes from the verifier (an ``amr`` attribute)
  or, failing that, from the format of the credential it proved (:data:`FORMAT_AMR`); its
  ``acr`` is the class ``[acr]`` assigns the method (:meth:`ScopePolicies.acr_of`).
- A grant satisfies a scope when its ``acr`` is among the policy's ``acr_values`` (if any) and
  its authentication is within ``max_age`` (if set).
- A sign-in satisfies a scope whose policy has ``accept_sign_in`` when the principal's ``acr``
  is among ``acr_values`` (if any) and its ``auth_time`` is within ``max_age``.
"""

from __future__ import annotations

from typing import Any

from .models import CredentialFormat, Grant, Principal
from .scopes import ScopePolicy

#: RFC 8176 (and the OpenID EAP ``pop``) values for what each kind of credential proves.
FORMAT_AMR: dict[CredentialFormat, tuple[str, ...]] = {
    CredentialFormat.PASSKEY: ("pop", "user"),
    CredentialFormat.TOTP: ("otp",),
    CredentialFormat.EMAIL: ("otp",),
    CredentialFormat.PHONE_NUMBER: ("sms",),
    CredentialFormat.BLOCKCHAIN: ("pop",),
    CredentialFormat.RECOVERY_CODE: ("otp",),
}


def amr_of(verifier: Any, credential_format: CredentialFormat | None) -> tuple[str, ...]:
    """The ``amr`` of a step-up: the verifier's own ``amr``, else its credential format's, else
    the method's name (an unregistered value, as RFC 8176 allows)."""
    declared = getattr(verifier, "amr", None)
    if declared:
        return tuple(str(v) for v in declared)
    if credential_format is not None and credential_format in FORMAT_AMR:
        return FORMAT_AMR[credential_format]
    return (str(verifier.name),)


def grant_satisfies(policy: ScopePolicy, grant: Grant, now: float) -> bool:
    """A grant's authentication is of a class and an age the policy accepts."""
    if policy.acr_values and grant.acr not in policy.acr_values:
        return False
    auth_time = grant.auth_time if grant.auth_time is not None else grant.issued_at
    return policy.fresh_enough(auth_time, now)


def sign_in_satisfies(policy: ScopePolicy, principal: Principal, now: float) -> bool:
    """The session's own sign-in stands for the step-up (``accept_sign_in``)."""
    if not policy.accept_sign_in or principal.auth_time is None:
        return False
    if policy.acr_values and principal.acr not in policy.acr_values:
        return False
    return policy.fresh_enough(principal.auth_time, now)
