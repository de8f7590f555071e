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

from .errors import ConfigError, InvalidScope, MethodNotAllowed
from .models import Factor, TokenBehavior

# ``\Z``, not ``$``: ``$`` also matches before a final newline.
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_-]*){1,2}\Z")
#: A policy key may end in ``*`` to cover every scope with that prefix (``wallet:*``).
POLICY_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_-]*){0,2}(:\*)?\Z")
MAX_SCOPE_LENGTH = 64


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
    """

    required: bool = True
    token_behavior: TokenBehavior = TokenBehavior.TIME_BOUND
    ttl: float = 600.0
    allowed_methods: tuple[str, ...] | None = None
    min_factor: Factor | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 < self.ttl <= 86_400:
            raise ConfigError(f"ttl must be between 0 and 86400 seconds, got {self.ttl}")

    def permits(self, method: str, factor: Factor) -> bool:
        if self.allowed_methods is not None and method not in self.allowed_methods:
            return False
        return not (self.min_factor is Factor.MFA and factor is not Factor.MFA)


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

    @classmethod
    def with_overrides(
        cls,
        overrides: Mapping[str, ScopePolicy],
        declared: Iterable[str] = (),
        default: ScopePolicy | None = None,
    ) -> ScopePolicies:
        merged = dict(DEFAULT_POLICIES)
        merged.update(overrides)
        exact = {k for k in overrides if not k.endswith("*")}
        return cls(policies=merged, default=default or DEFAULT_POLICY, declared=frozenset(declared) | exact)

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

    def ensure_method_allowed(self, scopes: Iterable[str], method: str, factor: Factor) -> None:
        refused = [s for s in scopes if not self.policy_for(s).permits(method, factor)]
        if refused:
            raise MethodNotAllowed(
                f"method {method!r} may not grant {', '.join(refused)} under the scope policy",
                scopes=refused,
                method=method,
            )
