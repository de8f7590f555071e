"""``stepup.toml``: the configuration, structured by cattrs.

Any string value written ``${NAME}`` is read from the environment variable NAME (an unset
variable is an error naming it), so secrets need not sit in the file. ``STEPUP_SECRET_KEY`` in
the environment supplies ``secret_key`` when the file leaves it out. A wrong key or value is a
:class:`~stepup_core.errors.ConfigError` naming it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs

from .crypto import decode_secret_key
from .errors import ConfigError, ValidationError
from .models import Factor, TokenBehavior
from .scopes import DEFAULT_POLICIES, DEFAULT_POLICY, ScopePolicies, ScopePolicy
from .serialization import config_converter, structure

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@attrs.frozen
class LimitsConfig:
    #: Seconds a challenge lives unless its method says otherwise.
    challenge_ttl: float = 300.0
    #: Failed verifications allowed per challenge (or per credential and window, for methods
    #: that need no challenge) before it is refused.
    max_attempts: int = 5
    #: Failures per user within ``lockout_window`` seconds that lock the user out of verifying.
    lockout_failures: int = 10
    lockout_window: float = 900.0


@attrs.frozen
class ScopePolicyConfig:
    required: bool = True
    token_behavior: TokenBehavior | None = None
    ttl: float | None = None
    allowed_methods: tuple[str, ...] | None = None
    min_factor: Factor | None = None

    def to_policy(self, base: ScopePolicy) -> ScopePolicy:
        return ScopePolicy(
            required=self.required,
            token_behavior=self.token_behavior or base.token_behavior,
            ttl=self.ttl if self.ttl is not None else base.ttl,
            allowed_methods=self.allowed_methods,
            min_factor=self.min_factor,
        )


def normalise_origins(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(normalise_origin(origin) for origin in values)


def normalise_origin(origin: str) -> str:
    """An origin as browsers send it in ``Origin``: lower-case scheme and host, no default port.

    ConfigError for anything else (a wildcard, ``null``, a path, user information).
    """
    if not isinstance(origin, str):
        raise ConfigError(f"cors_origins: expected origins as strings, got {type(origin).__name__}")
    parts = urlsplit(origin.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "*" in origin
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or port == -1
    ):
        raise ConfigError(
            f"cors_origins: {origin!r} is not an exact origin; write scheme://host[:port], "
            "for example 'https://app.example.com' (wildcards are refused)"
        )
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


@attrs.frozen
class ServerConfig:
    prefix: str = "/stepup"
    max_body_bytes: int = 64 * 1024
    #: Public base URL (scheme, host, port) for redirect callbacks; the server fills it in
    #: from its own address when unset.
    public_url: str | None = None
    #: Web origins (``https://app.example.com``) whose pages may call the stepup routes from
    #: another origin (CORS). Exact origins only: never ``*``. None by default.
    cors_origins: tuple[str, ...] = attrs.field(default=(), converter=normalise_origins)


@attrs.frozen
class PrincipalConfig:
    user_id: str
    session_id: str | None = None
    sign_in_credential_id: str | None = None


@attrs.frozen
class IdentifyConfig:
    """How ``stepup serve`` identifies callers.

    ``mode = "jwt"``: a signed session JWT in ``Authorization: Bearer``; ``sub`` is the user,
    ``session_claim`` the session. Give ``jwks_url`` or ``key`` (a PEM public key or an HMAC
    secret), and ``issuer`` / ``audience`` to check. ``mode = "tokens"``: static development
    tokens mapped to principals in ``tokens``.
    """

    mode: str = "tokens"
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    key: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    session_claim: str = "sid"
    sign_in_credential_claim: str | None = None
    tokens: dict[str, PrincipalConfig] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("jwt", "tokens"):
            raise ConfigError(f"identify.mode must be 'jwt' or 'tokens', got {self.mode!r}")
        if self.mode == "jwt" and not (self.jwks_url or self.key):
            raise ConfigError("identify.mode = 'jwt' needs identify.jwks_url or identify.key")


@attrs.frozen
class StepUpConfig:
    #: Store URL: ``sqlite:PATH`` (the embedded default), ``memory:``, ``redis://host:port/0``.
    store: str = "sqlite:stepup.sqlite3"
    #: At least 32 random bytes, hex or base64. Keys hashes of codes and seals secrets at rest.
    secret_key: str | None = None
    app_name: str = "stepup"
    limits: LimitsConfig = LimitsConfig()
    #: Scope policies by scope or ``prefix:*``; an exact key also declares an application scope.
    scopes: dict[str, ScopePolicyConfig] = attrs.field(factory=dict)
    #: Application scopes that use the default policy.
    declared_scopes: tuple[str, ...] = ()
    server: ServerConfig = ServerConfig()
    identify: IdentifyConfig = IdentifyConfig()
    #: One table per plugin, ``[plugins.<name>]``; each plugin structures its own.
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def secret_key_bytes(self) -> bytes | None:
        value = self.secret_key or os.environ.get("STEPUP_SECRET_KEY")
        return decode_secret_key(value) if value else None

    def scope_policies(self) -> ScopePolicies:
        overrides = {}
        builtin = ScopePolicies()
        for key, cfg in self.scopes.items():
            base = DEFAULT_POLICIES.get(key, DEFAULT_POLICY) if key.endswith("*") else builtin.policy_for(key)
            overrides[key] = cfg.to_policy(base)
        return ScopePolicies.with_overrides(overrides, declared=self.declared_scopes)

    def plugin_section(self, name: str, cls: type[T]) -> T:
        """Structure ``[plugins.<name>]`` into ``cls`` (an attrs class); errors name the key."""
        try:
            return structure(resolve_env(self.plugins.get(name, {})), cls, conv=config_converter)
        except ValidationError as exc:
            raise ConfigError(_config_message(exc, f"plugins.{name}.")) from None


def resolve_env(value: Any, path: str = "") -> Any:
    """Replace ``${NAME}`` strings by environment variables, recursively."""
    if isinstance(value, str):
        match = _ENV_REF.match(value)
        if match:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path or 'value'} refers to ${{{name}}}, but {name} is not set")
            return os.environ[name]
        return value
    if isinstance(value, Mapping):
        return {k: resolve_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _config_message(exc: ValidationError, prefix: str = "") -> str:
    return "invalid configuration: " + "; ".join(f"{prefix}{e['path']}: {e['message']}" for e in exc.errors)


def config_from_mapping(data: Mapping[str, Any]) -> StepUpConfig:
    """Build a configuration from a mapping shaped like ``stepup.toml``."""
    try:
        config = structure(resolve_env(dict(data)), StepUpConfig, conv=config_converter)
    except ValidationError as exc:
        raise ConfigError(_config_message(exc)) from None
    config.secret_key_bytes()  # validate early
    config.scope_policies()
    return config


def load_config(path: str | Path | None = None) -> StepUpConfig:
    """Read ``stepup.toml`` (or the defaults when ``path`` is None)."""
    if path is None:
        return config_from_mapping({})
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    return config_from_mapping(data)
