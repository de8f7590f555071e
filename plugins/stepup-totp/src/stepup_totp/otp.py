"""TOTP arithmetic and ``otpauth://`` URIs as pure functions (RFC 4226, RFC 6238).

The arithmetic is pyotp's; this module adds the policy around it: which parameters are
allowed, how long a secret must be, how wide the drift window is, and that a code is compared
in constant time against every step of the window. pyotp is imported when first used.

Policy on secrets: every secret this plugin generates has as many bytes as its hash's output
(20 for SHA-1, 32 for SHA-256, 64 for SHA-512, so never under 160 bits), and any secret
shorter than 128 bits (the minimum of RFC 4226, section 4, R6) is refused, whether it comes
from the store or from an ``otpauth://`` URI.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from stepup_core.crypto import constant_time_equals

if TYPE_CHECKING:
    import pyotp

ALGORITHMS: tuple[str, ...] = ("SHA1", "SHA256", "SHA512")
MIN_DIGITS = 6
MAX_DIGITS = 8
MIN_PERIOD = 15
MAX_PERIOD = 120
MAX_DRIFT = 2
#: RFC 4226 R6: "The length of the shared secret MUST be at least 128 bits."
MIN_SECRET_BITS = 128
#: Bytes of a generated secret per algorithm: the hash's output size (RFC 4226 recommends 160 bits
#: for SHA-1; RFC 6238 Appendix A uses 32 and 64 bytes for SHA-256 and SHA-512).
SECRET_BYTES: dict[str, int] = {"SHA1": 20, "SHA256": 32, "SHA512": 64}

_DIGESTS: dict[str, Callable[..., Any]] = {
    "SHA1": hashlib.sha1,
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}


def check_digits(digits: Any) -> None:
    if isinstance(digits, bool) or not isinstance(digits, int) or not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be an integer from {MIN_DIGITS} to {MAX_DIGITS}, got {digits!r}")


def check_algorithm(algorithm: Any) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")


def check_period(period: Any) -> None:
    if isinstance(period, bool) or not isinstance(period, int) or not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(
            f"period must be an integer number of seconds from {MIN_PERIOD} to {MAX_PERIOD}, got {period!r}"
        )


def check_parameters(digits: int, algorithm: str, period: int) -> None:
    """Raise ValueError naming the first parameter outside what this plugin supports."""
    check_digits(digits)
    check_algorithm(algorithm)
    check_period(period)


def check_drift(drift: int) -> None:
    if isinstance(drift, bool) or not isinstance(drift, int) or not 0 <= drift <= MAX_DRIFT:
        raise ValueError(f"drift must be an integer from 0 to {MAX_DRIFT} time steps, got {drift!r}")


def generate_secret(algorithm: str = "SHA1") -> str:
    """A fresh secret from ``secrets``, base32 without padding (as ``otpauth://`` URIs carry it).

    Its length is the hash's output size, so at least 160 bits.
    """
    if algorithm not in SECRET_BYTES:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES[algorithm])).decode("ascii").rstrip("=")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a base32 secret (any case, padding optional).

    Raises ValueError when it is not base32 or shorter than :data:`MIN_SECRET_BITS`.
    """
    text = secret.strip().upper().rstrip("=")
    try:
        key = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not valid base32") from None
    if len(key) * 8 < MIN_SECRET_BITS:
        raise ValueError(
            f"the secret has {len(key) * 8} bits; at least {MIN_SECRET_BITS} are required (RFC 4226 R6)"
        )
    return key


@functools.cache
def _decoded_totp_class() -> Callable[..., pyotp.TOTP]:
    import pyotp

    class DecodedTOTP(pyotp.TOTP):
        """pyotp's TOTP over key bytes decoded once: pyotp decodes the base32 secret again for
        every code it computes, which is most of a code's cost and is the same every time."""

        def __init__(self, key: bytes, secret: str, **kwargs: Any) -> None:
            self._key = key
            super().__init__(secret, **kwargs)

        def byte_secret(self) -> bytes:
            return self._key

    return DecodedTOTP


def _otp(secret: str, digits: int, algorithm: str, period: int) -> pyotp.TOTP:
    check_parameters(digits, algorithm, period)
    key = decode_secret(secret)  # our policy first: a clear error for short or malformed secrets
    normalized = secret.strip().upper().rstrip("=")
    return _decoded_totp_class()(key, normalized, digits=digits, digest=_DIGESTS[algorithm], interval=period)


def time_step(at: float, period: int = 30) -> int:
    """The RFC 6238 time step ``T = floor((at - T0) / X)`` with ``T0 = 0``."""
    if at < 0:
        raise ValueError("time before the Unix epoch")
    return int(at // period)


def code_for_step(secret: str, step: int, *, digits: int = 6, algorithm: str = "SHA1", period: int = 30) -> str:
    """The code of one time step (for TOTP, the HOTP value of counter ``step``)."""
    if step < 0:
        raise ValueError("time step must not be negative")
    return _otp(secret, digits, algorithm, period).generate_otp(step)


def code_at(secret: str, at: float, *, digits: int = 6, algorithm: str = "SHA1", period: int = 30) -> str:
    """The code an authenticator app shows at ``at`` (seconds since the epoch)."""
    return code_for_step(secret, time_step(at, period), digits=digits, algorithm=algorithm, period=period)


def is_well_formed(code: str, digits: int) -> bool:
    """True when ``code`` is exactly ``digits`` ASCII digits."""
    return len(code) == digits and code.isascii() and code.isdigit()


def verify_code(
    secret: str,
    code: str,
    at: float,
    digits: int = 6,
    algorithm: str = "SHA1",
    period: int = 30,
    drift: int = 1,
) -> int | None:
    """The time step whose code ``code`` is, within ``drift`` steps either side of ``at``; None if
    none matches.

    Every step of the window is computed and compared in constant time, whichever matches, so
    the time taken says nothing about how close a guess was. Steps before the epoch are skipped.
    A malformed code (not exactly ``digits`` digits) matches nothing. Raises ValueError for
    parameters or secrets the policy refuses.
    """
    check_drift(drift)
    otp = _otp(secret, digits, algorithm, period)
    current = time_step(at, period)
    well_formed = is_well_formed(code, digits)
    candidate = code if well_formed else "0" * digits
    matched: int | None = None
    for step in range(current - drift, current + drift + 1):
        if step < 0:
            continue
        if constant_time_equals(otp.generate_otp(step), candidate) and matched is None:
            matched = step
    return matched if well_formed else None


# --- otpauth:// URIs -------------------------------------------------------------------------


@attrs.frozen
class OtpauthKey:
    """What an ``otpauth://totp/...`` URI provisions."""

    secret: str
    account: str
    issuer: str | None = None
    digits: int = 6
    algorithm: str = "SHA1"
    period: int = 30

    def code_at(self, at: float) -> str:
        return code_at(self.secret, at, digits=self.digits, algorithm=self.algorithm, period=self.period)

    @property
    def label(self) -> str:
        return f"{self.issuer}:{self.account}" if self.issuer else self.account


def build_otpauth_uri(
    secret: str,
    *,
    account: str,
    issuer: str | None,
    digits: int = 6,
    algorithm: str = "SHA1",
    period: int = 30,
) -> str:
    """The Key URI an authenticator app scans: ``otpauth://totp/Issuer:account?secret=...``.

    Non-default digits, algorithm and period are written out; the issuer appears both in the
    label and as the ``issuer`` parameter, as the Key URI format recommends.
    """
    otp = _otp(secret, digits, algorithm, period)
    return otp.provisioning_uri(name=account, issuer_name=issuer)


def parse_otpauth_uri(uri: str) -> OtpauthKey:
    """Read an ``otpauth://totp/`` URI under this plugin's policy.

    Refused with ValueError: anything pyotp refuses (another scheme, no secret, repeated
    security parameters such as two ``algorithm=``, an issuer that differs between label and
    parameter, unknown algorithms), HOTP and Steam URIs, secrets under 128 bits, and digits or
    periods outside what this plugin verifies.
    """
    import pyotp

    try:
        otp = pyotp.parse_uri(uri)
    except ValueError as exc:
        raise ValueError(f"not an acceptable otpauth URI: {exc}") from None
    if type(otp) is not pyotp.TOTP:
        raise ValueError("not an acceptable otpauth URI: only otpauth://totp/ is supported")
    decode_secret(otp.secret)
    algorithm = otp.digest().name.upper().replace("-", "")
    check_parameters(otp.digits, algorithm, otp.interval)
    return OtpauthKey(
        secret=otp.secret,
        account=otp.name,
        issuer=otp.issuer,
        digits=otp.digits,
        algorithm=algorithm,
        period=otp.interval,
    )
