"""``[plugins.social]`` in ``stepup.toml``: the providers a user can re-authenticate with.

Structured by the core's configuration converter (unknown keys are errors naming them);
``${NAME}`` values are read from the environment before structuring.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import attrs

from stepup_core.errors import ConfigError

OIDC = "oidc"
OAUTH2 = "oauth2"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"

#: Signature algorithms accepted on ID tokens unless a provider narrows them. Symmetric (HS*)
#: and ``none`` are never accepted.
DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_ASYMMETRIC = frozenset(DEFAULT_ALGORITHMS)
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@attrs.frozen
class ProviderConfig:
    """One ``[plugins.social.providers.<name>]`` table.

    ``kind = "oidc"``: give ``issuer``; endpoints and keys come from its discovery document.
    ``kind = "oauth2"``: give ``authorization_endpoint``, ``token_endpoint``,
    ``userinfo_endpoint`` and ``subject_field`` (the user-info member holding the stable account
    id, ``id`` on GitHub); ``issuer`` then only names the account namespace and defaults to the
    user-info endpoint's origin.
    """

    client_id: str
    kind: str = OIDC
    client_secret: str | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    subject_field: str = "sub"
    scopes: tuple[str, ...] | None = None
    token_endpoint_auth: str = CLIENT_SECRET_BASIC
    #: Shown to people (``alias`` of linked accounts); defaults to the provider's key.
    display_name: str | None = None
    #: ID-token signature algorithms accepted (OpenID Connect only).
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    #: Refuse ID tokens without ``auth_time`` (the request asks for ``max_age=0``, which obliges
    #: conforming providers to send it).
    require_auth_time: bool = False
    #: Extra query parameters for the authorization request (``hd``, ``login_hint``...).
    authorize_params: dict[str, str] = attrs.field(factory=dict)

    def effective_scopes(self) -> tuple[str, ...]:
        if self.scopes is not None:
            return self.scopes
        return ("openid",) if self.kind == OIDC else ()

    def namespace(self) -> str:
        """The issuer half of a linked account's identifier."""
        if self.issuer:
            return self.issuer
        assert self.userinfo_endpoint is not None
        parts = urlsplit(self.userinfo_endpoint)
        return f"{parts.scheme}://{parts.netloc}"


@attrs.frozen
class SocialSettings:
    providers: dict[str, ProviderConfig] = attrs.field(factory=dict)
    #: Seconds a person has to finish signing in at the provider.
    challenge_ttl: float = 600.0
    #: ``auth_time`` may precede the challenge by at most this many seconds (clock skew).
    auth_time_skew: float = 30.0
    #: Leeway in seconds on ``exp`` and ``iat`` of ID tokens.
    clock_leeway: float = 60.0
    #: Seconds a discovery document and its JWKS stay cached.
    discovery_ttl: float = 3600.0
    #: A JWKS is fetched again for an unknown key id at most this often (key rotation).
    jwks_refresh_interval: float = 60.0
    #: Seconds for each request to a provider.
    http_timeout: float = 10.0
    #: Largest provider response read, in bytes.
    max_response_bytes: int = 512 * 1024


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str | None, path: str, *, required: bool) -> None:
    """A provider URL must be absolute https (plain http only on a loopback address)."""
    if value is None:
        if required:
            raise ConfigError(f"plugins.social.{path} is required")
        return
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise ConfigError(
        f"plugins.social.{path} must be an absolute https:// URL (http:// only on a loopback address), got {value!r}"
    )


def validate(settings: SocialSettings) -> SocialSettings:
    """Check what the converter cannot: kinds, URLs, names. Raises ConfigError naming the key."""
    for name, provider in settings.providers.items():
        where = f"providers.{name}"
        if not _PROVIDER_NAME.match(name):
            raise ConfigError(f"plugins.social.{where}: a provider name is lower-case letters, digits, '-' and '_'")
        if not provider.client_id:
            raise ConfigError(f"plugins.social.{where}.client_id must not be empty")
        if provider.token_endpoint_auth not in (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST):
            raise ConfigError(
                f"plugins.social.{where}.token_endpoint_auth must be {CLIENT_SECRET_BASIC!r} or "
                f"{CLIENT_SECRET_POST!r}, got {provider.token_endpoint_auth!r}"
            )
        if provider.kind == OIDC:
            check_url(provider.issuer, f"{where}.issuer", required=True)
            for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
                if getattr(provider, key) is not None:
                    raise ConfigError(
                        f"plugins.social.{where}.{key}: an oidc provider reads its endpoints from "
                        "the issuer's discovery document; remove the key"
                    )
            if "openid" not in provider.effective_scopes():
                raise ConfigError(f"plugins.social.{where}.scopes must include 'openid'")
            bad = [a for a in provider.algorithms if a not in _ASYMMETRIC]
            if bad or not provider.algorithms:
                raise ConfigError(
                    f"plugins.social.{where}.algorithms: only asymmetric signature algorithms are "
                    f"accepted ({', '.join(DEFAULT_ALGORITHMS)}), got {bad or 'none'}"
                )
        elif provider.kind == OAUTH2:
            check_url(provider.authorization_endpoint, f"{where}.authorization_endpoint", required=True)
            check_url(provider.token_endpoint, f"{where}.token_endpoint", required=True)
            check_url(provider.userinfo_endpoint, f"{where}.userinfo_endpoint", required=True)
            if not provider.subject_field:
                raise ConfigError(f"plugins.social.{where}.subject_field must not be empty")
            if provider.require_auth_time:
                raise ConfigError(f"plugins.social.{where}.require_auth_time needs an OpenID Connect provider")
        else:
            raise ConfigError(f"plugins.social.{where}.kind must be {OIDC!r} or {OAUTH2!r}, got {provider.kind!r}")
        if provider.issuer is not None and any(c.isspace() for c in provider.issuer):
            raise ConfigError(f"plugins.social.{where}.issuer must not contain white space")
    for key in ("challenge_ttl", "discovery_ttl", "http_timeout"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"plugins.social.{key} must be positive")
    for key in ("auth_time_skew", "clock_leeway", "jwks_refresh_interval"):
        if getattr(settings, key) < 0:
            raise ConfigError(f"plugins.social.{key} must not be negative")
    return settings
