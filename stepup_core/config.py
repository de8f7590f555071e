"""``stepup.toml``: the configuration, structured by cattrs.

Environment references are expanded once, when the file (or a mapping shaped like it) is read,
in every string value of every table, ``[plugins.*]`` included, by :func:`expand_env`:

- ``${NAME}`` is replaced by the environment variable NAME, alone or inside a longer string
  (``"sqlite:${STATE_DIR}/stepup.sqlite3"``, ``"Bearer ${SMS_TOKEN}"``);
- an unset variable is a :class:`~stepup_core.errors.ConfigError` naming it and the key;
- ``$$`` is a literal ``$``; any other ``$`` is kept as written (``pa$word``), but ``${`` must
  start a well-formed reference (letters, digits and ``_``, not starting with a digit);
- the value of a variable is used as it is: it is never expanded again.

A configuration built in Python (``StepUpConfig(...)``) is taken literally. ``STEPUP_SECRET_KEY``
in the environment supplies ``secret_key`` when the file sets no key (``secret_key``,
``secret_keys`` or ``secret_keys_file``). A wrong key or value is a
:class:`~stepup_core.errors.ConfigError` naming it.
"""

from __future__ import annotations

import logging
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
log = logging.getLogger("stepup")
#: ``$$``, or ``${`` and what follows up to the closing brace (checked by :func:`expand_env`).
_ENV_TOKEN = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}]*)(?P<close>\}?))")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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
    #: Step-up challenges one user may hold at once (each lives its TTL plus a grace period
    #: unless it is completed); one more is refused with 429 ``rate_limited``.
    max_live_challenges: int = 50
    #: Enrolments one user may have pending at once.
    max_live_enrollments: int = 10
    #: Challenges and enrolments one user may begin per method within ``begin_window`` seconds,
    #: for every method (methods that send codes add their own, stricter limits).
    begin_limit: int = 60
    begin_window: float = 60.0

    def __attrs_post_init__(self) -> None:
        for name in ("max_attempts", "lockout_failures", "max_live_challenges", "max_live_enrollments", "begin_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("challenge_ttl", "lockout_window", "begin_window"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"limits.{name} must be a positive number of seconds, got {getattr(self, name)}")


@attrs.frozen
class ScopePolicyConfig:
    required: bool = True
    token_behavior: TokenBehavior | None = None
    ttl: float | None = None
    allowed_methods: tuple[str, ...] | None = None
    min_factor: Factor | None = None
    #: RFC 9470: classes that satisfy the scope, sent in the challenge (see ``[acr]``).
    acr_values: tuple[str, ...] = ()
    #: RFC 9470: most seconds since the person authenticated, sent in the challenge.
    max_age: float | None = None
    #: A sign-in meeting ``acr_values`` within ``max_age`` is the step-up.
    accept_sign_in: bool = False
    #: Issue grants for this (time-bound) scope as JWTs verifiable with ``{prefix}/jwks.json``.
    signed: bool = False

    def to_policy(self, base: ScopePolicy) -> ScopePolicy:
        return ScopePolicy(
            required=self.required,
            token_behavior=self.token_behavior or base.token_behavior,
            ttl=self.ttl if self.ttl is not None else base.ttl,
            allowed_methods=self.allowed_methods,
            min_factor=self.min_factor,
            acr_values=self.acr_values,
            max_age=self.max_age,
            accept_sign_in=self.accept_sign_in,
            signed=self.signed,
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


SIGNING_ALGORITHMS = ("ES256", "EdDSA")
_CREDENTIAL_HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z")


@attrs.frozen
class GrantsConfig:
    """Signed grants (``signed = true`` in a scope policy): JWTs other services verify with the
    keys at ``{prefix}/jwks.json``."""

    #: ``ES256`` (P-256) or ``EdDSA`` (Ed25519).
    algorithm: str = "ES256"
    #: The ``iss`` claim; default ``server.public_url`` + prefix, else ``urn:stepup:<app_name>``.
    issuer: str | None = None
    #: An ``aud`` claim, when the verifying services expect one.
    audience: str | None = None
    #: Seconds a signing key signs before the next replaces it; a retired key stays published
    #: until the last token it signed has expired.
    key_rotation: float = 7 * 86_400.0

    def __attrs_post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise ConfigError(
                f"grants.algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}, got {self.algorithm!r}"
            )
        if not 60 <= self.key_rotation <= 366 * 86_400:
            raise ConfigError(f"grants.key_rotation must be between 60 s and a year, got {self.key_rotation}")


@attrs.frozen
class IntrospectionConfig:
    """Service credentials for ``POST {prefix}/introspect`` (applications beside ``stepup serve``).

    ``clients`` maps a name (for audit events) to the SHA-256 of the credential, written
    ``sha256:<hex>``; the credential itself is never configured. ``stepup introspection-credential``
    makes one. No clients: every introspection call is refused.
    """

    clients: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for name, digest in self.clients.items():
            if not _CREDENTIAL_HASH.match(digest):
                raise ConfigError(
                    f"introspection.clients.{name}: give the credential's hash, 'sha256:' and 64 hex digits "
                    "(stepup introspection-credential prints it), never the credential itself"
                )


@attrs.frozen
class AdminConfig:
    """The admin HTTP API under the prefix (``{prefix}/admin/...``): off unless ``enabled``.

    Operators are identified by ``identify``, an ``[admin.identify]`` table shaped like
    ``[identify]`` (``mode = "tokens"`` with ``[admin.identify.tokens."<token>"] user_id =
    "<operator>"``, or ``mode = "jwt"`` with its own key or audience), never by a user's session:
    a token both tables accept, or a JWT setting that would accept the application's session
    tokens, is a configuration error.
    """

    enabled: bool = False
    identify: IdentifyConfig | None = None


@attrs.frozen
class StepUpConfig:
    #: Store URL: ``sqlite:PATH`` (the embedded default), ``memory:``, ``redis://host:port/0``.
    store: str = "sqlite:stepup.sqlite3"
    #: At least 32 random bytes, hex or base64. Keys hashes of codes and seals secrets at rest.
    #: One key; for rotation use ``secret_keys`` or ``secret_keys_file`` instead.
    secret_key: str | None = None
    #: Several keys, the current one first: new values use it, older ones are only read
    #: (``stepup keys rotate`` moves what it can to the first).
    secret_keys: tuple[str, ...] = ()
    #: A file with one key per line, the current one first (``#`` starts a comment).
    secret_keys_file: str | None = None
    app_name: str = "stepup"
    #: Let codes be printed to the server's console when no real sender (SMTP, an SMS gateway)
    #: serves a channel a method sends codes over. Off: ``stepup serve --config`` refuses to
    #: start instead (development mode, without ``--config``, always allows it).
    allow_console_delivery: bool = False
    limits: LimitsConfig = LimitsConfig()
    #: Scope policies by scope or ``prefix:*``; an exact key also declares an application scope.
    scopes: dict[str, ScopePolicyConfig] = attrs.field(factory=dict)
    #: Application scopes that use the default policy.
    declared_scopes: tuple[str, ...] = ()
    server: ServerConfig = ServerConfig()
    identify: IdentifyConfig = IdentifyConfig()
    #: Authentication context classes (RFC 9470 ``acr`` values) and the methods that achieve
    #: each, e.g. ``phr = ["passkey"]``; a scope's ``acr_values`` refer to them.
    acr: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    grants: GrantsConfig = GrantsConfig()
    introspection: IntrospectionConfig = IntrospectionConfig()
    admin: AdminConfig = AdminConfig()
    #: One table per plugin, ``[plugins.<name>]``; each plugin structures its own.
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def secret_key_bytes(self) -> bytes | None:
        """The current secret key (the first of :meth:`secret_keys_bytes`), None when unset."""
        keys = self.secret_keys_bytes()
        return keys[0] if keys else None

    def secret_keys_bytes(self) -> list[bytes]:
        """Every configured secret key, the current one first: ``secret_keys``, else the lines of
        ``secret_keys_file``, else ``secret_key``, else ``STEPUP_SECRET_KEY``; empty when none."""
        given = [name for name in ("secret_key", "secret_keys", "secret_keys_file") if getattr(self, name)]
        if len(given) > 1:
            raise ConfigError(f"set only one of secret_key, secret_keys and secret_keys_file (got {', '.join(given)})")
        if self.secret_keys:
            values = list(self.secret_keys)
        elif self.secret_keys_file:
            values = _read_key_file(Path(self.secret_keys_file))
        else:
            value = self.secret_key or os.environ.get("STEPUP_SECRET_KEY")
            values = [value] if value else []
        keys = []
        for index, value in enumerate(values):
            try:
                keys.append(decode_secret_key(value))
            except ConfigError as exc:
                where = "secret_key" if len(values) == 1 and not self.secret_keys else f"secret key #{index + 1}"
                raise ConfigError(f"{where}: {exc}") from None
        return keys

    def scope_policies(self) -> ScopePolicies:
        overrides = {}
        builtin = ScopePolicies()
        for key, cfg in self.scopes.items():
            base = DEFAULT_POLICIES.get(key, DEFAULT_POLICY) if key.endswith("*") else builtin.policy_for(key)
            overrides[key] = cfg.to_policy(base)
        return ScopePolicies.with_overrides(overrides, declared=self.declared_scopes, acr_methods=self.acr)

    def plugin_section(self, name: str, cls: type[T]) -> T:
        """Structure ``[plugins.<name>]`` into ``cls`` (an attrs class); errors name the key.

        Environment references were expanded when the file was read; they are not expanded again.
        """
        try:
            return structure(self.plugins.get(name, {}), cls, conv=config_converter)
        except ValidationError as exc:
            raise ConfigError(_config_message(exc, f"plugins.{name}.")) from None


def expand_env(text: str, path: str = "value") -> str:
    """Expand ``${NAME}`` references and ``$$`` in ``text`` (see the module's docstring).

    :param path: the key holding ``text`` (``plugins.otp.smtp.password``), for error messages.
    """
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        body = match.group("body")
        if not match.group("close") or not _ENV_NAME.match(body):
            raise ConfigError(
                f"{path}: {match.group(0)[:40]!r} is not a valid environment reference; write ${{NAME}} "
                "(letters, digits and '_'), or $$ for a literal $"
            )
        if body not in os.environ:
            raise ConfigError(f"{path} refers to ${{{body}}}, but {body} is not set")
        return os.environ[body]

    return _ENV_TOKEN.sub(replace, text)


def _read_key_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"secret_keys_file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if mode & 0o077:
        log.warning("stepup: secret_keys_file %s is readable by other users; chmod 600 it", path)
    keys = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    keys = [k for k in keys if k]
    if not keys:
        raise ConfigError(f"secret_keys_file {str(path)!r} holds no key; put one key per line, the current first")
    return keys


def resolve_env(value: Any, path: str = "") -> Any:
    """:func:`expand_env` on every string in ``value`` (mappings and lists, recursively)."""
    if isinstance(value, str):
        return expand_env(value, path or "value")
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
    config.secret_keys_bytes()  # validate early
    config.scope_policies()
    _check_admin(config)
    return config


def _check_admin(config: StepUpConfig) -> None:
    admin = config.admin.identify
    if admin is None:
        if config.admin.enabled:
            raise ConfigError(
                "admin.enabled needs an [admin.identify] table naming how operators are identified "
                "(never the application's sessions)"
            )
        return
    user = config.identify
    if admin.mode == "tokens" and user.mode == "tokens":
        shared = set(admin.tokens) & set(user.tokens)
        if shared:
            raise ConfigError("admin.identify.tokens and identify.tokens share a token: give operators their own")
    if admin.mode == "jwt" and user.mode == "jwt":
        same_keys = (admin.key, admin.jwks_url) == (user.key, user.jwks_url)
        if same_keys and (admin.audience is None or admin.audience == user.audience):
            raise ConfigError(
                "admin.identify would accept the application's session tokens: give it its own key or "
                "jwks_url, or an audience of its own (admin.identify.audience)"
            )


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
