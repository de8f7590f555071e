"""The WebAuthn ceremonies' checks as pure functions, on top of py_webauthn.

:func:`verify_registration` (WebAuthn L2 §7.1) and :func:`verify_authentication` (§7.2) take
the browser's JSON and what the relying party expects, and either return what was proven or
raise :class:`~stepup_core.errors.VerificationFailed` (:class:`~stepup_core.errors.InvalidResponse`
when the JSON is malformed, naming the field). They touch no store and no clock of their own,
so the verifier, the conformance tests and anyone else run the very same checks.

``webauthn`` is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import datetime
import importlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from stepup_core.errors import InvalidResponse, VerificationFailed

#: What an assertion's signature counter of 0 means: the authenticator keeps no counter.
NO_COUNTER = 0


class SignCountRegression(VerificationFailed):
    """The authenticator's signature counter did not move past the stored one.

    Either the assertion was replayed or the credential's private key exists on more than one
    authenticator (a cloned security key). The verifier refuses it and emits
    ``passkey_sign_count_regression``.
    """

    def __init__(self, stored: int, received: int) -> None:
        super().__init__(
            f"the passkey's signature counter went from {stored} to {received} instead of increasing: "
            "the authenticator may have been cloned; use another passkey or remove this one",
            storedSignCount=stored,
            receivedSignCount=received,
        )
        self.stored = stored
        self.received = received


@attrs.frozen
class RegisteredPasskey:
    """What a verified registration proves. Byte values are base64url without padding."""

    credential_id: str
    #: COSE_Key of the credential.
    public_key: str
    algorithm: int
    sign_count: int
    aaguid: str
    attestation_format: str
    user_verified: bool
    #: The credential may be synced to other devices (BE flag): a "multi-device" passkey.
    backup_eligible: bool
    #: The credential is currently backed up (BS flag).
    backed_up: bool
    transports: tuple[str, ...] = ()


@attrs.frozen
class AuthenticatedPasskey:
    """What a verified assertion proves."""

    credential_id: str
    new_sign_count: int
    user_verified: bool
    backup_eligible: bool
    backed_up: bool


# --- base64url -----------------------------------------------------------------------


_TO_STANDARD_ALPHABET = str.maketrans("-_", "+/")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url, padded or not (standard base64 is tolerated: some clients send it).

    Raise ValueError on anything else, whitespace included.
    """
    if not isinstance(text, str):
        raise ValueError("not base64url")
    standard = text.translate(_TO_STANDARD_ALPHABET)
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


# --- the shape of the browser's JSON ----------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj or obj[key] is None:
        raise InvalidResponse(f"{path}.{key} is missing", field=f"{path}.{key}")
    return obj[key]


def _b64url_field(obj: Mapping[str, Any], key: str, path: str, *, allow_empty: bool = False) -> bytes:
    value = _field(obj, key, path)
    if not isinstance(value, str):
        raise InvalidResponse(f"{path}.{key} must be a base64url string", field=f"{path}.{key}")
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise InvalidResponse(f"{path}.{key} is not valid base64url", field=f"{path}.{key}") from None
    if not raw and not allow_empty:
        raise InvalidResponse(f"{path}.{key} is empty", field=f"{path}.{key}")
    return raw


REGISTRATION_FIELDS = ("clientDataJSON", "attestationObject")
AUTHENTICATION_FIELDS = ("clientDataJSON", "authenticatorData", "signature")


def check_credential_shape(credential: Any, path: str, response_fields: Sequence[str]) -> bytes:
    """Check the PublicKeyCredential JSON's shape (``REGISTRATION_FIELDS`` or
    ``AUTHENTICATION_FIELDS`` in its response) and return the raw credential id.

    :raises InvalidResponse: naming the first bad field, below ``path``.
    """
    if not isinstance(credential, Mapping):
        raise InvalidResponse(f"{path} must be an object (the PublicKeyCredential JSON)", field=path)
    raw_id = _b64url_field(credential, "rawId", path)
    credential_id = _field(credential, "id", path)
    if not isinstance(credential_id, str) or credential_id.rstrip("=") != b64url_encode(raw_id):
        raise InvalidResponse(f"{path}.id does not match {path}.rawId", field=f"{path}.id")
    if credential.get("type") != "public-key":
        raise InvalidResponse(f"{path}.type must be 'public-key'", field=f"{path}.type")
    response = _field(credential, "response", path)
    if not isinstance(response, Mapping):
        raise InvalidResponse(f"{path}.response must be an object", field=f"{path}.response")
    for key in response_fields:
        _b64url_field(response, key, f"{path}.response")
    handle = response.get("userHandle")
    if handle is not None:
        _b64url_field(response, "userHandle", f"{path}.response", allow_empty=True)
    client_data_path = f"{path}.response.clientDataJSON"
    try:
        client_data = json.loads(b64url_decode(response["clientDataJSON"]))
    except (ValueError, RecursionError):
        client_data = None
    if not isinstance(client_data, dict) or not all(
        isinstance(client_data.get(k), str) for k in ("type", "challenge", "origin")
    ):
        raise InvalidResponse(
            f"{client_data_path} must be a JSON object with type, challenge and origin",
            field=client_data_path,
        )
    if "authenticatorData" in response_fields and len(b64url_decode(response["authenticatorData"])) < 37:
        raise InvalidResponse(
            f"{path}.response.authenticatorData is too short to be authenticator data",
            field=f"{path}.response.authenticatorData",
        )
    return raw_id


def _client_data(credential: Mapping[str, Any]) -> dict[str, Any]:
    raw = b64url_decode(credential["response"]["clientDataJSON"])
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("clientDataJSON is not an object")
    return data


def _refuse_cross_origin(credential: Mapping[str, Any]) -> None:
    # The ceremony ran inside a frame of another site: refused, stepup pages are not embedded.
    if _client_data(credential).get("crossOrigin") is True:
        raise VerificationFailed(
            "the passkey was used from a page embedded in another site (crossOrigin); "
            "open the page directly"
        )


def _origins(origins: str | Sequence[str]) -> list[str]:
    return [origins] if isinstance(origins, str) else list(origins)


def check_origin(credential: Mapping[str, Any], origins: str | Sequence[str]) -> None:
    """Refuse a ceremony that ran on a page whose origin is not allowed, saying which origin the
    browser reported and which ones this server accepts (what to put in ``origins``)."""
    allowed = _origins(origins)
    seen = _client_data(credential).get("origin")
    if seen not in allowed:
        shown = str(seen)[:200]
        raise VerificationFailed(
            f"the passkey was used on a page at {shown!r}, but this server accepts passkeys only from "
            f"{', '.join(repr(o) for o in allowed)}; open the page there, or add its origin to "
            "[plugins.passkey] origins",
            origin=shown,
            allowedOrigins=allowed,
        )


def _transports(credential: Mapping[str, Any]) -> tuple[str, ...]:
    # RegistrationResponseJSON puts them in response.transports; older clients at the top.
    value = credential["response"].get("transports", credential.get("transports"))
    if not isinstance(value, list):
        return ()
    known = ("ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb")
    return tuple(t for t in value if isinstance(t, str) and t in known)


# --- pinning the clock of attestation certificate checks --------------------------------

_CERTIFICATE_TIME: contextvars.ContextVar[datetime.datetime | None] = contextvars.ContextVar(
    "stepup_passkey_certificate_time", default=None
)
_cert_clock_installed = False


@contextlib.contextmanager
def _refusals(path: str, refused: str, shape: str) -> Iterator[None]:
    """py_webauthn's errors as stepup's: malformed JSON names the field, a failed check is
    ``verification_failed``, and anything undecodable is a malformed response, never a 500."""
    from webauthn.helpers.exceptions import InvalidJSONStructure, WebAuthnException

    try:
        yield
    except VerificationFailed:
        raise
    except InvalidJSONStructure as exc:
        raise InvalidResponse(f"{path} is malformed: {exc}", field=path) from None
    except WebAuthnException as exc:
        raise VerificationFailed(f"{refused}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - undecodable input must never escape as a 500
        raise InvalidResponse(
            f"{path} could not be decoded ({type(exc).__name__}); send the {shape} unchanged", field=path
        ) from None


def _install_certificate_clock() -> None:
    """Let X.509 attestation chains be validated at an injected instant.

    py_webauthn builds its certificate store in ``_generate_new_cert_store``, which its
    documentation names as the place to set the validation time. It is replaced, once, by a
    function that reads the instant of the current context (None: now), so concurrent
    verifications each see their own clock.
    """
    global _cert_clock_installed
    if _cert_clock_installed:
        return
    from OpenSSL.crypto import X509Store

    module = importlib.import_module("webauthn.helpers.validate_certificate_chain")

    def cert_store_at_injected_time() -> X509Store:
        store = X509Store()
        at = _CERTIFICATE_TIME.get()
        if at is not None:
            store.set_time(at)
        return store

    if not hasattr(module, "_generate_new_cert_store"):
        raise RuntimeError("this version of webauthn has no certificate store hook; pin webauthn<4")
    setattr(module, "_generate_new_cert_store", cert_store_at_injected_time)  # noqa: B010
    _cert_clock_installed = True


def _as_datetime(at: datetime.datetime | float | None) -> datetime.datetime | None:
    if at is None or isinstance(at, datetime.datetime):
        return at
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc)


# --- the ceremonies -------------------------------------------------------------------


def verify_registration(
    credential: Any,
    *,
    expected_challenge: bytes,
    rp_id: str,
    origins: str | Sequence[str],
    require_user_verification: bool,
    allowed_algorithms: Sequence[int] = (-7, -8, -257),
    trusted_roots: Mapping[str, Sequence[bytes]] | None = None,
    attestation_time: datetime.datetime | float | None = None,
    path: str = "credential",
) -> RegisteredPasskey:
    """Verify a RegistrationResponseJSON (the answer to ``navigator.credentials.create``).

    :param credential: the browser's JSON (a mapping).
    :param expected_challenge: the challenge issued in the creation options.
    :param rp_id: the relying party ID the credential must be scoped to.
    :param origins: the origin or origins the ceremony may have run on.
    :param require_user_verification: refuse a credential created without UV.
    :param allowed_algorithms: COSE algorithm identifiers accepted for the credential key.
    :param trusted_roots: PEM trust anchors by attestation format (replacing the defaults).
    :param attestation_time: instant at which attestation certificate chains must be valid
        (a datetime or epoch seconds; None: now).
    :param path: how error messages name ``credential``.
    :raises InvalidResponse: the JSON is malformed (the message names the field).
    :raises VerificationFailed: a check failed (challenge, origin, RP ID, flags, attestation).
    """
    check_credential_shape(credential, path, REGISTRATION_FIELDS)

    from webauthn import verify_registration_response
    from webauthn.helpers.cose import COSEAlgorithmIdentifier
    from webauthn.helpers.structs import AttestationFormat

    try:
        algorithms = [COSEAlgorithmIdentifier(alg) for alg in allowed_algorithms]
        roots = None
        if trusted_roots is not None:
            roots = {AttestationFormat(fmt): list(pems) for fmt, pems in trusted_roots.items()}
    except ValueError as exc:
        raise ValueError(f"unsupported algorithm or attestation format: {exc}") from exc

    check_origin(credential, origins)
    _install_certificate_clock()
    token = _CERTIFICATE_TIME.set(_as_datetime(attestation_time))
    try:
        with _refusals(path, "passkey registration refused", "RegistrationResponseJSON"):
            verified = verify_registration_response(
                credential=dict(credential),
                expected_challenge=expected_challenge,
                expected_rp_id=rp_id,
                expected_origin=_origins(origins),
                require_user_presence=True,
                require_user_verification=require_user_verification,
                supported_pub_key_algs=algorithms,
                pem_root_certs_bytes_by_fmt=roots,
            )
            _refuse_cross_origin(credential)
    finally:
        _CERTIFICATE_TIME.reset(token)

    from webauthn.helpers import decode_credential_public_key
    from webauthn.helpers.structs import CredentialDeviceType

    algorithm = int(decode_credential_public_key(verified.credential_public_key).alg)
    return RegisteredPasskey(
        credential_id=b64url_encode(verified.credential_id),
        public_key=b64url_encode(verified.credential_public_key),
        algorithm=algorithm,
        sign_count=verified.sign_count,
        aaguid=str(verified.aaguid),
        attestation_format=str(getattr(verified.fmt, "value", verified.fmt)),
        user_verified=bool(verified.user_verified),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=bool(verified.credential_backed_up),
        transports=_transports(credential),
    )


def check_sign_count(stored: int, received: int) -> None:
    """WebAuthn L2 §7.2 step 21: when either counter is non-zero the new one must be greater.

    An authenticator without a counter reports 0 every time; that is accepted only while the
    stored value is 0 too.
    """
    if (stored > NO_COUNTER or received > NO_COUNTER) and received <= stored:
        raise SignCountRegression(stored, received)


def verify_authentication(
    credential: Any,
    *,
    expected_challenge: bytes,
    rp_id: str,
    origins: str | Sequence[str],
    public_key: bytes,
    stored_sign_count: int,
    require_user_verification: bool = True,
    path: str = "credential",
) -> AuthenticatedPasskey:
    """Verify an AuthenticationResponseJSON (the answer to ``navigator.credentials.get``).

    :param credential: the browser's JSON (a mapping).
    :param expected_challenge: the challenge issued in the request options.
    :param rp_id: the relying party ID.
    :param origins: the origin or origins the ceremony may have run on.
    :param public_key: the credential's COSE_Key, as stored at registration.
    :param stored_sign_count: the signature counter last seen for this credential.
    :param require_user_verification: refuse an assertion without UV (step-up: always).
    :param path: how error messages name ``credential``.
    :raises InvalidResponse: the JSON is malformed (the message names the field).
    :raises SignCountRegression: the signature is good but the counter did not increase.
    :raises VerificationFailed: any other check failed (challenge, origin, RP ID, UV, signature).
    """
    check_credential_shape(credential, path, AUTHENTICATION_FIELDS)
    check_origin(credential, origins)

    from webauthn import verify_authentication_response

    with _refusals(path, "passkey assertion refused", "AuthenticationResponseJSON"):
        # The counter is checked below, after the signature, so that only a genuine signature
        # can report a cloned authenticator; 0 turns py_webauthn's own counter check off.
        verified = verify_authentication_response(
            credential=dict(credential),
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=_origins(origins),
            credential_public_key=public_key,
            credential_current_sign_count=NO_COUNTER,
            require_user_verification=require_user_verification,
        )
        _refuse_cross_origin(credential)

    check_sign_count(stored_sign_count, verified.new_sign_count)

    from webauthn.helpers.structs import CredentialDeviceType

    return AuthenticatedPasskey(
        credential_id=b64url_encode(verified.credential_id),
        new_sign_count=verified.new_sign_count,
        user_verified=bool(verified.user_verified),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=bool(verified.credential_backed_up),
    )
