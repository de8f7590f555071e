"""Routing: the installed methods, the user's credentials, which route applies (MFA or
re-authentication), the default credential, and whether a method may mint for a user.

The rules, from the hook we mirror:

- a user with a primary MFA credential (an MFA method that is not a fallback) is routed to MFA,
  and re-authentication methods cannot mint for that user;
- a fallback (recovery codes) counts only beside another MFA credential;
- the default MFA credential is the one marked default, else the newest; the default
  re-authentication credential is the one the session signed in with, else the first sign-in
  credential, else the first.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import cast

import attrs
import pluggy

from .credentials import StoreCredentialRepository
from .errors import CredentialNotFound, MethodNotAllowed, NoEligibleCredential, UnknownMethod, VerificationFailed
from .install import install_hint
from .models import Credential, Factor, MethodInfo, Principal, Route, Transaction
from .scopes import ScopePolicies
from .verifier import CredentialFilter, Verification, Verifier, commits_transaction


class Routing:
    """The method registry and the credential rules over it."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        verifiers: dict[str, Verifier],
        owners: dict[str, str],
        credentials: StoreCredentialRepository,
        policies: ScopePolicies,
    ) -> None:
        self.pm = pm
        self.verifiers = verifiers
        self.owners = owners
        self.credentials = credentials
        self.policies = policies
        #: Whether each verifier filters credentials, by identity: an isinstance check against a
        #: runtime protocol costs more than the rest of a check's routing.
        self._filters: dict[int, tuple[Verifier, bool]] = {}

    # --- methods ------------------------------------------------------------------------

    def verifier(self, method: str) -> Verifier:
        verifier = self.verifiers.get(method)
        if verifier is None:
            installed = ", ".join(sorted(self.verifiers)) or "none"
            raise UnknownMethod(
                f"unknown method {method!r}; installed methods: {installed}; to add it: "
                + install_hint(f"stepup-{method}"),
                method=method,
            )
        return verifier

    def methods(self) -> list[MethodInfo]:
        return [
            MethodInfo(
                name=v.name,
                factor=v.factor,
                formats=tuple(v.formats),
                interaction=v.interaction,
                fallback=v.fallback,
                requires_challenge=v.requires_challenge,
                plugin=self.owners.get(v.name),
                package=getattr(v, "package", None),
                label=getattr(v, "label", None),
                prompt=getattr(v, "prompt", None),
                commits_transaction=commits_transaction(v),
            )
            for v in sorted(self.verifiers.values(), key=lambda v: v.name)
        ]

    def _method_for_format(self, credential: Credential) -> str | None:
        return next((v.name for v in self.verifiers.values() if credential.format in v.formats), None)

    # --- the user's credentials ----------------------------------------------------------

    async def user_credentials(self, principal: Principal, *, shared: bool = False) -> list[Credential]:
        """The user's stored credentials and those the application supplies
        (``stepup_user_credentials``), of installed methods only. ``shared``: for a caller that
        only reads them and changes none (see :meth:`StoreCredentialRepository.list_for_user`)."""
        stored = await self.credentials.list_for_user(principal.user_id, shared=shared)
        hook = self.pm.hook.stepup_user_credentials
        if not hook.get_hookimpls():  # none registered: no call to make
            return [c for c in stored if c.method in self.verifiers]
        seen = {c.id for c in stored}
        supplied: list[Credential] = []
        for answer in hook(principal=principal):
            for credential in (await answer if inspect.isawaitable(answer) else answer) or ():
                if credential.id in seen:
                    continue
                seen.add(credential.id)
                method = credential.method or self._method_for_format(credential) or ""
                supplied.append(attrs.evolve(credential, user_id=principal.user_id, method=method, external=True))
        return [c for c in [*stored, *supplied] if c.method in self.verifiers]

    def eligible(self, credential: Credential) -> bool:
        verifier = self.verifiers[credential.method]
        known = self._filters.get(id(verifier))
        if known is None or known[0] is not verifier:
            known = self._filters[id(verifier)] = (verifier, isinstance(verifier, CredentialFilter))
        return cast(CredentialFilter, verifier).eligible(credential) if known[1] else True

    def is_primary_mfa(self, credential: Credential) -> bool:
        verifier = self.verifiers[credential.method]
        return verifier.factor is Factor.MFA and not verifier.fallback

    def has_step_up_credential(self, credentials: Iterable[Credential]) -> bool:
        """Whether any of these credentials can step up: an eligible one that is not a fallback
        (a fallback such as recovery codes steps up only beside primary MFA, which counts). A
        user with none (no credential, or only recovery codes) could never mint a
        ``credential:link`` token, so enrols without one."""
        return any(self.eligible(c) and not self.verifiers[c.method].fallback for c in credentials)

    # --- the route and its default -------------------------------------------------------

    def route(
        self, principal: Principal, credentials: Sequence[Credential]
    ) -> tuple[Route, list[Credential], str | None]:
        """The route, the credentials offered on it (primary MFA first, then fallbacks), and
        the default one."""
        credentials = [c for c in credentials if self.eligible(c)]
        primary = [c for c in credentials if self.is_primary_mfa(c)]
        if primary:
            fallback = [
                c for c in credentials if self.verifiers[c.method].factor is Factor.MFA and not self.is_primary_mfa(c)
            ]
            return Route.MFA, [*primary, *fallback], self.default_credential(principal, Factor.MFA, primary).id
        reauth = [c for c in credentials if self.verifiers[c.method].factor is Factor.REAUTH]
        chosen = self.default_credential(principal, Factor.REAUTH, reauth) if reauth else None
        return Route.REAUTH, reauth, chosen.id if chosen else None

    @staticmethod
    def default_credential(principal: Principal, factor: Factor, candidates: Sequence[Credential]) -> Credential:
        """The one default-credential rule (``candidates`` is not empty)."""
        if factor is Factor.MFA:
            marked = next((c for c in candidates if c.is_default), None)
            return marked or max(candidates, key=lambda c: (c.created_at, c.id))
        session = next((c for c in candidates if c.id == principal.sign_in_credential_id), None)
        if principal.sign_in_credential_id and session is not None:
            return session
        return next((c for c in candidates if c.sign_in), candidates[0])

    def pick_credential(
        self, principal: Principal, verifier: Verifier, candidates: Sequence[Credential], requested_id: str | None
    ) -> Credential | None:
        """The credential a challenge or verification is about: the one named (refused unless
        the user holds it), else the method's default for the user, else None."""
        if requested_id is not None:
            found = next((c for c in candidates if c.id == requested_id), None)
            if found is None:
                raise CredentialNotFound(
                    f"no {verifier.name} credential {requested_id!r} for this user", credentialId=requested_id
                )
            return found
        if not candidates:
            return None
        # The default is an eligible credential when there is one (never, say, a phone number
        # on a server that sends no SMS); with none, the method gives its own refusal.
        eligible = [c for c in candidates if self.eligible(c)] or list(candidates)
        return self.default_credential(principal, verifier.factor, eligible)

    @staticmethod
    def ensure_held(verification: Verification, candidates: Sequence[Credential]) -> None:
        """A verifier proved a credential of this user's (one of ``candidates``), or the response
        is refused."""
        if all(c.id != verification.credential_id for c in candidates):
            raise VerificationFailed("the response proves a credential this user does not hold")

    @staticmethod
    def require_candidates(verifier: Verifier, candidates: Sequence[Credential]) -> None:
        if not candidates:
            raise NoEligibleCredential(
                f"this user has no {verifier.name} credential; enrol one first", method=verifier.name
            )

    def ensure_may_mint(
        self,
        verifier: Verifier,
        credentials: Sequence[Credential],
        scopes: Iterable[str],
        transaction: Transaction | None = None,
    ) -> None:
        has_mfa = any(self.is_primary_mfa(c) and self.eligible(c) for c in credentials)
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
        scopes = tuple(scopes)
        self.policies.ensure_method_allowed(scopes, verifier.name, verifier.factor)
        self.policies.ensure_transaction_allowed(
            scopes, verifier.name, bound=transaction is not None, commits=commits_transaction(verifier)
        )

    def able_to_bind(self, scope: str, bound: Transaction | None, credentials: list[Credential]) -> list[Credential]:
        """The credentials whose method may mint for ``scope`` with or without a transaction:
        a policy that requires a committing method for bound step-ups leaves the others out."""
        policy = self.policies.policy_for(scope)
        if (bound is None and not policy.transaction_required) or not policy.committing_method_required:
            return credentials
        return [c for c in credentials if commits_transaction(self.verifiers[c.method])]
