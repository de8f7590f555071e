"""``[plugins.passkey]`` in ``stepup.toml``.

Only attrs and the standard library are imported here: reading the configuration happens when
the plugin registers its verifier, and that must stay cheap.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import attrs

from stepup_core.errors import ConfigError

#: COSE algorithm identifiers by the names used in the configuration (IANA COSE registry).
ALGORITHMS: dict[str, int] = {
    "ES256": -7,
    "EdDSA": -8,
    "ES512": -36,
    "PS256": -37,
    "PS384": -38,
    "PS512": -39,
    "RS256": -257,
    "RS384": -258,
    "RS512": -259,
    "ML-DSA-44": -48,
    "ML-DSA-65": -49,
    "ML-DSA-87": -50,
}
DEFAULT_ALGORITHMS = ("ES256", "EdDSA", "RS256")
ATTESTATION_PREFERENCES = ("none", "indirect", "direct", "enterprise")
USER_VERIFICATION_AT_REGISTRATION = ("required", "preferred")
RESIDENT_KEY_REQUIREMENTS = ("discouraged", "preferred", "required")
#: Origins of Android apps calling the platform's FIDO API (``android:apk-key-hash:<hash>``).
ANDROID_ORIGIN_PREFIX = "android:apk-key-hash:"
def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def is_ip_literal(host: str) -> bool:
    """True for a host a browser reads as an IP address: IPv4 (also in the short, octal or
    hexadecimal forms URL parsing accepts, such as ``127.1``: a last label that is a number) or
    IPv6. WebAuthn needs a domain: browsers refuse passkeys on such hosts (``SecurityError``)."""
    host = host.strip("[]").rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    last = host.rsplit(".", 1)[-1].lower()
    return bool(last) and (last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])))


def check_origin(origin: str, rp_id: str) -> None:
    """Raise ConfigError unless ``origin`` can carry passkeys for ``rp_id`` in a browser.

    Browsers only run WebAuthn in a secure context (``https``, or ``http`` on ``localhost``),
    never on an IP address, and only for an RP ID that equals the origin's host or is a
    registrable suffix of it.
    """
    if origin.startswith(ANDROID_ORIGIN_PREFIX):
        if len(origin) == len(ANDROID_ORIGIN_PREFIX):
            raise ConfigError(f"origins: {origin!r} lacks the APK key hash")
        return
    parts = urlsplit(origin)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(
            f"origins: {origin!r} is not an origin; write scheme://host[:port], "
            "for example 'https://app.example.com'"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(
            f"origins: {origin!r} must be an origin only (scheme://host[:port]), no path"
        )
    if is_ip_literal(host):
        local = f"{parts.scheme}://localhost" + (f":{parts.port}" if parts.port else "")
        raise ConfigError(
            f"origins: {origin!r} has an IP address for its host; browsers refuse passkeys on IP "
            f"addresses (SecurityError): serve the page on a domain name ({local!r} for development)"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"origins: {origin!r} uses http; browsers allow passkeys over http only "
            "on localhost, use https"
        )
    if host != rp_id and not host.endswith("." + rp_id):
        raise ConfigError(
            f"origins: the host of {origin!r} is not {rp_id!r} nor a subdomain of it; "
            "browsers refuse passkeys whose rp_id does not match the page's origin"
        )


@attrs.frozen
class PasskeySettings:
    """``[plugins.passkey]``.

    ``origins`` defaults to ``["https://<rp_id>"]``. ``user_verification`` is what registration
    asks for; step-up always requires user verification (PIN or biometric).
    """

    #: Relying party ID: the registrable domain passkeys are bound to (``example.com``).
    rp_id: str = "localhost"
    #: Name shown by the browser or authenticator while registering.
    rp_name: str = "stepup"
    #: Web origins (and ``android:apk-key-hash:...`` app origins) allowed to use the passkeys.
    origins: tuple[str, ...] = ()
    #: Attestation conveyance asked for at registration.
    attestation: str = "none"
    #: User verification at registration: ``required`` (default) or ``preferred``.
    user_verification: str = "required"
    #: Whether the passkey should be discoverable (stored on the authenticator).
    resident_key: str = "preferred"
    #: How long the browser waits for the person, in milliseconds; also the challenge lifetime.
    timeout_ms: int = 300_000
    #: Signature algorithms accepted for new passkeys, most preferred first.
    allow_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS

    def __attrs_post_init__(self) -> None:
        for name, allowed in (
            ("attestation", ATTESTATION_PREFERENCES),
            ("user_verification", USER_VERIFICATION_AT_REGISTRATION),
            ("resident_key", RESIDENT_KEY_REQUIREMENTS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                choices = ", ".join(repr(a) for a in allowed)
                raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        rp_id = self.rp_id.strip().lower()
        if not rp_id or "/" in rp_id or ":" in rp_id or rp_id != self.rp_id:
            raise ConfigError(
                f"rp_id must be a lower-case domain name without scheme or port "
                f"(for example 'example.com'), got {self.rp_id!r}"
            )
        if is_ip_literal(rp_id):
            raise ConfigError(
                f"rp_id must be a domain name, not an IP address ({self.rp_id!r}): browsers refuse "
                "passkeys for IP addresses (SecurityError); use 'localhost' for development"
            )
        if not self.rp_name.strip():
            raise ConfigError("rp_name must not be empty")
        for origin in self.origins:
            check_origin(origin, self.rp_id)
        if not 10_000 <= self.timeout_ms <= 600_000:
            raise ConfigError(
                f"timeout_ms must be between 10000 and 600000, got {self.timeout_ms}"
            )
        if not self.allow_algorithms:
            raise ConfigError("allow_algorithms must name at least one algorithm")
        unknown = [name for name in self.allow_algorithms if name not in ALGORITHMS]
        if unknown:
            known = ", ".join(ALGORITHMS)
            raise ConfigError(f"allow_algorithms: unknown {unknown}; known: {known}")

    @property
    def effective_origins(self) -> tuple[str, ...]:
        return self.origins or (f"https://{self.rp_id}",)

    @property
    def algorithm_ids(self) -> tuple[int, ...]:
        return tuple(ALGORITHMS[name] for name in self.allow_algorithms)

    @property
    def require_user_verification_at_registration(self) -> bool:
        return self.user_verification == "required"

    @property
    def challenge_ttl(self) -> float:
        return self.timeout_ms / 1000
