"""A software authenticator: a WebAuthn client and authenticator in one object, for tests and
``stepup demo``.

It does what a browser and a security key do together, with real keys and real encodings:

- ``create(options)`` takes PublicKeyCredentialCreationOptionsJSON and returns a
  RegistrationResponseJSON: a new ES256, Ed25519 or RS256 key pair (cryptography), the COSE
  public key in attested credential data, a CBOR attestation object of format ``none`` or
  ``packed`` self attestation (fido2's CBOR and data classes), a clientDataJSON with type,
  challenge, origin and crossOrigin.
- ``get(options)`` takes PublicKeyCredentialRequestOptionsJSON and returns an
  AuthenticationResponseJSON signed over authenticatorData (rpIdHash, UP/UV/BE/BS flags, a
  signature counter) and the clientDataJSON hash.

Knobs make it misbehave on purpose, as a broken or hostile client would: another origin, no user
verification, answering for any RP ID, a cloned twin with the same keys.

fido2 is imported inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

#: AAGUID this authenticator reports (a fixed random UUID naming "stepup software authenticator").
SOFTWARE_AAGUID = uuid.UUID("5d6f1c2e-8b4a-4f7e-9c3d-2a1b0e9f8d7c")
#: COSE algorithm identifiers this authenticator can create keys for.
SUPPORTED = {"ES256": -7, "EdDSA": -8, "RS256": -257}

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class AuthenticatorError(Exception):
    """The ceremony was refused, as a browser would reject ``navigator.credentials`` calls."""


class CredentialExcluded(AuthenticatorError):
    """``create``: the authenticator already holds a credential the RP excluded (InvalidStateError)."""


class NoMatchingCredential(AuthenticatorError):
    """``get``: none of the allowed credentials is on this authenticator (NotAllowedError)."""


class UnsupportedAlgorithms(AuthenticatorError):
    """``create``: none of the RP's pubKeyCredParams is an algorithm this authenticator has."""


@attrs.define
class SoftwareCredential:
    credential_id: bytes
    rp_id: str
    user_handle: bytes
    algorithm: int
    private_key: PrivateKey = attrs.field(repr=False)
    sign_count: int = 0


def _new_key(algorithm: int) -> PrivateKey:
    if algorithm == SUPPORTED["ES256"]:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == SUPPORTED["EdDSA"]:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))  # DER, as WebAuthn expects for ES256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _cose_key(key: PrivateKey, algorithm: int) -> Any:
    from fido2.cose import CoseKey

    return CoseKey.for_alg(algorithm).from_cryptography_key(key.public_key())


@attrs.define
class SoftwareAuthenticator:
    """A passkey authenticator in software (see the module documentation).

    :param origin: the web origin the ceremonies claim to run on; None: ``https://<rpId>``.
    :param algorithms: key types it can create, by preference when the RP allows several
        (``ES256``, ``EdDSA``, ``RS256``); the RP's order wins among those it lists.
    :param attestation: ``none`` or ``packed`` (self attestation: signed by the new key).
    :param user_verification: whether it verifies the person (UV flag); False sets UV=0 even
        when the RP requires it, as a key without PIN or biometrics answering anyway would.
    :param counter: keep a signature counter (True) or always report 0 (many synced passkeys).
    :param backup_eligible, backed_up: the BE and BS flags (a synced, multi-device passkey).
    :param enforce_rp_id: answer only for the RP ID a credential was created for (True, as real
        authenticators do); False answers any rpId, to test the server's RP ID check.
    :param cross_origin: the crossOrigin member of clientDataJSON.
    """

    origin: str | None = None
    algorithms: Sequence[str] = ("ES256", "EdDSA", "RS256")
    attestation: str = "none"
    user_verification: bool = True
    counter: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    enforce_rp_id: bool = True
    cross_origin: bool = False
    transports: tuple[str, ...] = ("internal",)
    aaguid: uuid.UUID = SOFTWARE_AAGUID
    credentials: list[SoftwareCredential] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        unknown = [a for a in self.algorithms if a not in SUPPORTED]
        if unknown:
            raise ValueError(f"unsupported algorithms {unknown}; choose from {sorted(SUPPORTED)}")
        if self.attestation not in ("none", "packed"):
            raise ValueError("attestation must be 'none' or 'packed'")

    # --- helpers ---------------------------------------------------------------------

    def _origin_for(self, rp_id: str) -> str:
        return self.origin or f"https://{rp_id}"

    def _flags(self, attested: bool) -> int:
        from fido2.webauthn import AuthenticatorData

        flag = AuthenticatorData.FLAG
        flags = flag.UP
        if self.user_verification:
            flags |= flag.UV
        if self.backup_eligible:
            flags |= flag.BE
        if self.backed_up:
            flags |= flag.BS
        if attested:
            flags |= flag.AT
        return int(flags)

    def credential_ids(self) -> list[bytes]:
        return [c.credential_id for c in self.credentials]

    def clone(self) -> SoftwareAuthenticator:
        """A twin holding the same private keys and counters (a cloned security key)."""
        twin = attrs.evolve(self, credentials=[])
        twin.credentials = [attrs.evolve(c) for c in self.credentials]
        return twin

    # --- navigator.credentials.create ----------------------------------------------------

    def create(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        """Answer PublicKeyCredentialCreationOptionsJSON with a RegistrationResponseJSON."""
        from fido2.webauthn import (
            AttestationObject,
            AttestedCredentialData,
            AuthenticatorAttachment,
            AuthenticatorAttestationResponse,
            AuthenticatorData,
            CollectedClientData,
            PublicKeyCredentialCreationOptions,
            RegistrationResponse,
        )

        options = PublicKeyCredentialCreationOptions.from_dict(dict(public_key))
        origin_host = urlsplit(self._origin_for(options.rp.id or "localhost")).hostname or "localhost"
        rp_id = options.rp.id or origin_host
        excluded = {d.id for d in options.exclude_credentials or []}
        if any(c.credential_id in excluded and c.rp_id == rp_id for c in self.credentials):
            raise CredentialExcluded("this authenticator already holds a passkey for this account")

        mine = {SUPPORTED[name] for name in self.algorithms}
        offered = [p.alg for p in options.pub_key_cred_params if p.alg in mine]
        if not offered:
            raise UnsupportedAlgorithms(
                f"the relying party allows {[p.alg for p in options.pub_key_cred_params]}, "
                f"this authenticator has {sorted(mine)}"
            )
        algorithm = offered[0]
        key = _new_key(algorithm)
        credential = SoftwareCredential(
            credential_id=secrets.token_bytes(32),
            rp_id=rp_id,
            user_handle=bytes(options.user.id),
            algorithm=algorithm,
            private_key=key,
        )

        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.CREATE,
            challenge=options.challenge,
            origin=self._origin_for(rp_id),
            cross_origin=self.cross_origin,
        )
        attested = AttestedCredentialData.create(self.aaguid.bytes, credential.credential_id, _cose_key(key, algorithm))
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(),
            AuthenticatorData.FLAG(self._flags(attested=True)),
            credential.sign_count,
            attested,
        )
        statement: dict[str, Any] = {}
        if self.attestation == "packed":
            statement = {"alg": algorithm, "sig": _sign(key, bytes(auth_data) + client_data.hash)}
        attestation_object = AttestationObject.create(self.attestation, auth_data, statement)

        self.credentials.append(credential)
        response = RegistrationResponse(
            raw_id=credential.credential_id,
            response=AuthenticatorAttestationResponse(
                client_data=client_data, attestation_object=attestation_object
            ),
            authenticator_attachment=AuthenticatorAttachment.CROSS_PLATFORM,
        )
        out = dict(response)
        out["response"] = dict(out["response"], transports=list(self.transports))
        return out

    # --- navigator.credentials.get -------------------------------------------------------

    def get(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        """Answer PublicKeyCredentialRequestOptionsJSON with an AuthenticationResponseJSON."""
        from fido2.webauthn import (
            AuthenticationResponse,
            AuthenticatorAssertionResponse,
            AuthenticatorAttachment,
            AuthenticatorData,
            CollectedClientData,
            PublicKeyCredentialRequestOptions,
        )

        options = PublicKeyCredentialRequestOptions.from_dict(dict(public_key))
        rp_id = options.rp_id or (urlsplit(self._origin_for("localhost")).hostname or "localhost")
        allowed = {d.id for d in options.allow_credentials or []}
        candidates = [
            c
            for c in self.credentials
            if (not allowed or c.credential_id in allowed) and (c.rp_id == rp_id or not self.enforce_rp_id)
        ]
        if not candidates:
            raise NoMatchingCredential(f"no passkey for {rp_id} on this authenticator")
        credential = candidates[0]
        if self.counter:
            credential.sign_count += 1

        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.GET,
            challenge=options.challenge,
            origin=self._origin_for(rp_id),
            cross_origin=self.cross_origin,
        )
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp_id.encode()).digest(),
            AuthenticatorData.FLAG(self._flags(attested=False)),
            credential.sign_count if self.counter else 0,
        )
        signature = _sign(credential.private_key, bytes(auth_data) + client_data.hash)
        response = AuthenticationResponse(
            raw_id=credential.credential_id,
            response=AuthenticatorAssertionResponse(
                client_data=client_data,
                authenticator_data=auth_data,
                signature=signature,
                user_handle=credential.user_handle,
            ),
            authenticator_attachment=AuthenticatorAttachment.CROSS_PLATFORM,
        )
        return dict(response)
