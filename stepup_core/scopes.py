"""Token scopes and the policy that says how each one is guarded.

A scope names one sensitive action (``wallet:export``). The reference's scopes are built in;
applications declare their own in configuration. Every scope must match :data:`SCOPE_PATTERN`:
two or three lowercase segments separated by colons, each starting with a letter
(``billing:payout``, ``org:member:remove``), at most 64 characters.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

import attrs

from .errors import CommittingMethodRequired, ConfigError, InvalidScope, MethodNotAllowed, TransactionRequired
from .models import Factor, TokenBehavior

# ``\Z``, not ``$``: ``$`` also matches before a final newline.
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_-]*){1,2}\Z")
#: A policy key may end in ``*`` to cover every scope with that prefix (``wallet:*``).
POLICY_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_-]*){0,2}(:\*)?\Z")
MAX_SCOPE_LENGTH = 64
#: RFC 6750 allows these characters in a challenge's quoted values; an acr value is one token
#: of the space-separated ``acr_values``.
ACR_PATTERN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}\Z")


class TokenScope:
    """The reference's scopes."""

    WALLET_EXPORT = "wallet:export"
    WALLET_SIGN = "wallet:sign"
    WALLET_DELETE = "wallet:delete"
    CREDENTIAL_LINK = "credential:link"
    CREDENTIAL_UNLINK = "credential:unlink"
    CREDENTIAL_UPDATE = "credential:update"
    USER_UPDATE = "user:update"
    USER_DELETE = "user:delete"

    BUILT_IN: frozenset[str] = frozenset(
        {
            WALLET_EXPORT,
            WALLET_SIGN,
            WALLET_DELETE,
            CREDENTIAL_LINK,
            CREDENTIAL_UNLINK,
            CREDENTIAL_UPDATE,
            USER_UPDATE,
            USER_DELETE,
        }
    )


def validate_scope_syntax(scope: object, field: str = "scope") -> str:
    if not isinstance(scope, str):
        raise InvalidScope(f"a scope is a string, got {type(scope).__name__}", field)
    if len(scope) > MAX_SCOPE_LENGTH or not SCOPE_PATTERN.match(scope):
        raise InvalidScope(
            f"{scope[:80]!r} is not a valid scope: use 'resource:action' in lowercase "
            "(letters, digits, '_' and '-'), at most three segments and 64 characters",
            field,
        )
    return scope


@attrs.frozen
class ScopePolicy:
    """How one scope (or a family of scopes, ``wallet:*``) is guarded.

    ``required``: step-up is needed at all. ``token_behavior`` and ``ttl`` (seconds) shape the
    elevated token. ``allowed_methods`` (None: any) and ``min_factor`` (None: any) confine which
    methods may mint it.

    Transaction binding: ``transaction_required`` refuses a step-up for the scope that carries
    no transaction details. ``committing_method_required`` lets only methods whose proof commits
    to the details (``commitsTransaction``: passkey, wallet, OTP) mint a bound token for the
    scope. A bound token is single-use whatever ``token_behavior`` says, never signed, and a
    sign-in never stands for it (the person has not seen the details).

    RFC 9470: ``acr_values`` are the authentication context classes that satisfy the scope (a
    step-up method counts when ``[acr]`` lists it under one of them), ``max_age`` the most
    seconds since the person authenticated; both travel in the 401 challenge. With
    ``accept_sign_in`` a sign-in that meets them (its ``acr`` among ``acr_values`` when those
    are set, its ``auth_time`` within ``max_age``) is the step-up: the person is not prompted
    twice. On a single-use scope such a sign-in is spent by its first use, like a token.

    ``signed``: grants for this scope are issued as JWTs (``{prefix}/jwks.json`` publishes the
    keys) that other services can verify on their own. Only time-bound scopes: a single-use
    scope stays checked by the server, which alone can spend a token once. For the same reason
    a grant bound to transaction details is never signed, and ``signed`` with
    ``transaction_required`` (every grant bound) is refused.
    """

    required: bool = True
    token_behavior: TokenBehavior = TokenBehavior.TIME_BOUND
    ttl: float = 600.0
    allowed_methods: tuple[str, ...] | None = None
    min_factor: Factor | None = None
    transaction_required: bool = False
    committing_method_required: bool = False
    acr_values: tuple[str, ...] = ()
    max_age: float | None = None
    accept_sign_in: bool = False
    signed: bool = False

    def __attrs_post_init__(self) -> None:
        if not 0 < self.ttl <= 86_400:
            raise ConfigError(f"ttl must be between 0 and 86400 seconds, got {self.ttl}")
        if self.max_age is not None and not 0 < self.max_age <= 86_400:
            raise ConfigError(f"max_age must be between 0 and 86400 seconds, got {self.max_age}")
        for value in self.acr_values:
            if not value or not ACR_PATTERN.match(value):
                raise ConfigError(
                    f"acr_values: {value[:80]!r} is not an authentication context class reference "
                    "(printable ASCII without spaces, quotes or backslashes)"
                )
        if self.accept_sign_in and self.max_age is None:
            raise ConfigError(
                "accept_sign_in needs max_age: only a recent sign-in can stand for a step-up (for example max_age = 60)"
            )
        if self.signed and self.token_behavior is TokenBehavior.SINGLE_USE:
            raise ConfigError(
                "signed grants are for time-bound scopes: a single-use token must be spent on the "
                "server, which a signature checked elsewhere cannot do"
            )
        if self.signed and self.transaction_required:
            raise ConfigError(
                "signed grants cannot be bound to transaction details: with transaction_required every "
                "grant of the scope is single-use and checked by the server, so signed would never apply"
            )

    def permits(self, method: str, factor: Factor) -> bool:
        if self.allowed_methods is not None and method not in self.allowed_methods:
            return False
        return not (self.min_factor is Factor.MFA and factor is not Factor.MFA)

    def fresh_enough(self, auth_time: float | None, now: float) -> bool:
        """``auth_time`` satisfies ``max_age`` (always, without one)."""
        if self.max_age is None:
            return True
        return auth_time is not None and 0 <= now - auth_time <= self.max_age


DEFAULT_POLICIES: Mapping[str, ScopePolicy] = {
    "wallet:*": ScopePolicy(token_behavior=TokenBehavior.SINGLE_USE, ttl=300.0),
}
DEFAULT_POLICY = ScopePolicy()


@attrs.frozen
class ScopePolicies:
    """The policy table. Lookup: an exact key, else the longest matching ``prefix:*`` key,
    else ``default``. ``declared`` are the application's own scopes (besides the built-ins);
    a policy key without ``*`` declares its scope too."""

    policies: Mapping[str, ScopePolicy] = attrs.field(factory=lambda: dict(DEFAULT_POLICIES))
    default: ScopePolicy = DEFAULT_POLICY
    declared: frozenset[str] = frozenset()
    #: Authentication context classes and the methods that achieve each (``[acr]``).
    acr_methods: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: Known scopes already validated, with their policy: every protected request looks its scope up.
    _resolved: dict[str, ScopePolicy] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for key in self.policies:
            if not POLICY_KEY_PATTERN.match(key):
                raise ConfigError(f"scope policy key {key!r} is not a scope or a 'prefix:*' pattern")
        for scope in self.declared:
            try:
                validate_scope_syntax(scope)
            except InvalidScope as exc:
                raise ConfigError(f"declared scope: {exc}") from None
        for value in self.acr_methods:
            if not ACR_PATTERN.match(value):
                raise ConfigError(f"[acr]: {value[:80]!r} is not an authentication context class reference")
        for key, policy in self.policies.items():
            if (
                policy.acr_values
                and not policy.accept_sign_in
                and not any(self.acr_methods.get(v) for v in policy.acr_values)
            ):
                raise ConfigError(
                    f"scope {key!r}: no method achieves acr_values {list(policy.acr_values)} (list methods under "
                    "[acr]) and accept_sign_in is off, so nothing could ever satisfy the scope"
                )

    @classmethod
    def with_overrides(
        cls,
        overrides: Mapping[str, ScopePolicy],
        declared: Iterable[str] = (),
        default: ScopePolicy | None = None,
        acr_methods: Mapping[str, Iterable[str]] | None = None,
    ) -> ScopePolicies:
        merged = dict(DEFAULT_POLICIES)
        merged.update(overrides)
        exact = {k for k in overrides if not k.endswith("*")}
        return cls(
            policies=merged,
            default=default or DEFAULT_POLICY,
            declared=frozenset(declared) | exact,
            acr_methods={k: tuple(v) for k, v in (acr_methods or {}).items()},
        )

    def is_known(self, scope: str) -> bool:
        return scope in TokenScope.BUILT_IN or scope in self.declared

    def known_scopes(self) -> tuple[str, ...]:
        """Every scope :meth:`validate` accepts: the built-in ones and the declared ones."""
        return tuple(sorted(TokenScope.BUILT_IN | self.declared))

    def validate(self, scope: object, field: str = "scope") -> str:
        """Return ``scope`` if it is well-formed and known, else raise :class:`InvalidScope`."""
        if isinstance(scope, str) and scope in self._resolved:
            return scope
        value = validate_scope_syntax(scope, field)
        if not self.is_known(value):
            raise InvalidScope(
                f"unknown scope {value!r}: declare application scopes under [scopes] in stepup.toml",
                field,
            )
        self._resolved[value] = self._lookup(value)
        return value

    def policy_for(self, scope: str) -> ScopePolicy:
        resolved = self._resolved.get(scope)
        return resolved if resolved is not None else self._lookup(scope)

    def _lookup(self, scope: str) -> ScopePolicy:
        if scope in self.policies:
            return self.policies[scope]
        matches = [k for k in self.policies if k.endswith("*") and fnmatch.fnmatchcase(scope, k)]
        if matches:
            return self.policies[max(matches, key=len)]
        return self.default

    def token_shape(self, scopes: Iterable[str]) -> tuple[TokenBehavior, float]:
        """One token for several scopes: single-use if any scope is, with the shortest TTL."""
        chosen = [self.policy_for(s) for s in scopes]
        if not chosen:
            return self.default.token_behavior, self.default.ttl
        single = any(p.token_behavior is TokenBehavior.SINGLE_USE for p in chosen)
        return (TokenBehavior.SINGLE_USE if single else TokenBehavior.TIME_BOUND), min(p.ttl for p in chosen)

    def ensure_transaction_allowed(self, scopes: Iterable[str], method: str, *, bound: bool, commits: bool) -> None:
        """Refuse a step-up to ``scopes`` by ``method`` that the transaction policies forbid:
        unbound where a scope requires details (:class:`TransactionRequired`), or bound by a
        method that cannot commit where a scope requires one (:class:`CommittingMethodRequired`)."""
        chosen = list(scopes)
        if not bound:
            needing = [s for s in chosen if self.policy_for(s).transaction_required]
            if needing:
                raise TransactionRequired(
                    f"a step-up for {', '.join(needing)} must carry the action's transaction details "
                    "in `transaction` (the scope policy binds every grant to one action)"
                )
            return
        if commits:
            return
        refused = [s for s in chosen if self.policy_for(s).committing_method_required]
        if refused:
            raise CommittingMethodRequired(
                f"method {method!r} cannot commit its proof to the transaction details, and the scope policy "
                f"of {', '.join(refused)} requires a method that does (see commitsTransaction in GET /methods)",
                scopes=refused,
                method=method,
            )

    def longest_signed_ttl(self) -> float:
        """The longest TTL a signed grant may have (how long a retired signing key stays published)."""
        signed = [p.ttl for p in (*self.policies.values(), self.default) if p.signed]
        return max(signed, default=self.default.ttl)

    def signed(self, scopes: Iterable[str]) -> bool:
        """A grant for ``scopes`` is issued as a JWT: every scope's policy asks for it."""
        chosen = [self.policy_for(s) for s in scopes]
        return bool(chosen) and all(p.signed for p in chosen)

    def acr_of(self, method: str, scopes: Iterable[str] = ()) -> str | None:
        """The authentication context class a step-up with ``method`` achieves: the first of the
        scopes' ``acr_values`` that ``[acr]`` lists the method under, else the first class of
        ``[acr]`` that lists it, else None."""
        for scope in scopes:
            for value in self.policy_for(scope).acr_values:
                if method in self.acr_methods.get(value, ()):
                    return value
        return next((value for value, methods in self.acr_methods.items() if method in methods), None)

    def method_meets_acr(self, policy: ScopePolicy, method: str) -> bool:
        return not policy.acr_values or any(method in self.acr_methods.get(v, ()) for v in policy.acr_values)

    def ensure_method_allowed(self, scopes: Iterable[str], method: str, factor: Factor) -> None:
        refused = [
            s
            for s in scopes
            if not self.policy_for(s).permits(method, factor) or not self.method_meets_acr(self.policy_for(s), method)
        ]
        if refused:
            raise MethodNotAllowed(
                f"method {method!r} may not grant {', '.join(refused)} under the scope policy",
                scopes=refused,
                method=method,
            )
