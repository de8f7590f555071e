"""The server half: issue an EIP-4361 message per attempt and check its EIP-191 signature.

Nothing here imports eth-account at module level; :mod:`.signatures` and :mod:`.addresses`
import their libraries the first time a wallet is actually challenged or verified.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.crypto import constant_time_equals
from stepup_core.errors import (
    ChallengeExpired,
    ConfigError,
    EnrollmentFailed,
    InvalidResponse,
    MethodNotAllowed,
    NoEligibleCredential,
    ReplayDetected,
    StepUpError,
    ValidationError,
    VerificationFailed,
)
from stepup_core.models import Credential, CredentialFormat, Factor, Interaction
from stepup_core.store.base import make_key
from stepup_core.verifier import (
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    RateLimit,
    Verification,
    VerifierContext,
)

from .addresses import AddressError, parse_address, shorten_address
from .eip4361 import (
    VERSION,
    MessageRejected,
    SiweMessage,
    check_message,
    format_message,
    format_timestamp,
    is_authority,
    is_statement,
    is_uri,
    parse_message,
    timestamp_seconds,
)
from .signatures import recover_signer

METHOD = "wallet"
PACKAGE = "stepup-wallet"
#: EIP-4361 messages this method issues live at most this long.
MAX_MESSAGE_TTL = 300.0
#: Statement of the message that links a wallet to an account.
LINK_STATEMENT = "Link this wallet to your account"
#: Each requested scope appears in the message's resources as this prefix plus the scope.
SCOPE_RESOURCE_PREFIX = "urn:stepup:scope:"
_EMBEDDED_MARKERS = ("embedded",)


@attrs.frozen
class WalletSettings:
    """``[plugins.wallet]`` in ``stepup.toml``.

    ``domain`` and ``uri`` are what the message binds the signature to (EIP-4361 ``domain`` and
    ``URI``); when unset they come from ``server.public_url``. ``chain_id`` is used for wallets
    whose chain is not recorded. ``statement_prefix`` starts the statement that names the
    requested scopes. ``message_ttl`` (seconds, at most 300) bounds each message's lifetime.
    """

    domain: str | None = None
    uri: str | None = None
    chain_id: int = 1
    statement_prefix: str = "Confirm your identity to allow"
    message_ttl: float = MAX_MESSAGE_TTL

    def __attrs_post_init__(self) -> None:
        if self.domain is not None and not is_authority(self.domain):
            raise ConfigError(
                f"domain: {self.domain!r} is not a host name with an optional port "
                "(for example 'app.example.com' or 'localhost:8080'); do not include a scheme or path"
            )
        if self.uri is not None and not is_uri(self.uri):
            raise ConfigError(f"uri: {self.uri!r} is not an absolute URI such as 'https://app.example.com'")
        if isinstance(self.chain_id, bool) or self.chain_id < 1:
            raise ConfigError(f"chain_id must be a positive EIP-155 chain id, got {self.chain_id}")
        if not is_statement(self.statement_prefix):
            raise ConfigError(
                "statement_prefix must be one line of letters, digits, spaces and URI "
                f"punctuation (EIP-4361 statement), got {self.statement_prefix!r}"
            )
        if not 30 <= self.message_ttl <= MAX_MESSAGE_TTL:
            raise ConfigError(
                f"message_ttl must be between 30 and {MAX_MESSAGE_TTL:g} seconds, got {self.message_ttl:g}"
            )


def is_embedded(credential: Credential) -> bool:
    """True for wallets whose keys the application holds for the user (embedded wallets).

    Marked by ``data["embedded"] is True``, or a ``data["walletProvider"]`` or ``type`` that
    says embedded (``embeddedWallet``). Their signatures prove nothing the session does not
    already prove, so they never step up.
    """
    if credential.data.get("embedded") is True:
        return True
    provider = credential.data.get("walletProvider")
    labels = [credential.type, provider if isinstance(provider, str) else None]
    return any(label and any(m in label.lower() for m in _EMBEDDED_MARKERS) for label in labels)


def chain_id_of(credential: Credential, default: int) -> int:
    """The chain from a ``type`` of the form ``eip155:<chainId>``, else ``default``."""
    prefix, _, number = (credential.type or "").partition(":")
    if prefix == "eip155" and number.isdigit() and int(number) > 0:
        return int(number)
    return default


def new_nonce() -> str:
    """128 random bits as 32 hex digits: alphanumeric and at least 8 characters (EIP-4361)."""
    return secrets.token_hex(16)


def _embedded_refusal(credential: Credential) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"wallet {credential.alias or credential.id} is an embedded wallet; only an external wallet "
        "(one whose key the person holds) can confirm a sensitive action",
        method=METHOD,
        credentialId=credential.id,
        reason="embedded_wallet",
    )


def select_wallet(attempt: Attempt) -> Credential:
    """The wallet to challenge: the one named by ``credentialId``, else the first linked
    external wallet. Embedded wallets are refused when named, and passed over otherwise."""
    external = [c for c in attempt.candidates if not is_embedded(c)]
    chosen = attempt.credential
    if chosen is not None and is_embedded(chosen):
        if attempt.credential_requested or not external:
            raise _embedded_refusal(chosen)
        chosen = None
    if chosen is None:
        if not external:
            if attempt.candidates:
                raise _embedded_refusal(attempt.candidates[0])
            raise NoEligibleCredential("link an external wallet before verifying with one", method=METHOD)
        chosen = external[0]
    return chosen


def wallet_address(credential: Credential) -> str:
    try:
        return parse_address(credential.identifier)
    except AddressError as exc:
        raise NoEligibleCredential(
            f"wallet credential {credential.id} has no usable address: {exc}", method=METHOD, credentialId=credential.id
        ) from None


def scope_statement(prefix: str, scopes: Sequence[str]) -> str:
    return f"{prefix}: {', '.join(scopes)}"


def _require_text(params: dict[str, Any], field: str) -> str:
    value = params.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"response.{field} is required and must be a string", field=field)
    return value


def _rejection(exc: MessageRejected, challenge_id: str) -> StepUpError:
    if exc.reason == "expired":
        return ChallengeExpired(f"{exc.message}; start a new challenge", challengeId=challenge_id)
    return VerificationFailed(exc.message, reason=exc.reason)


class WalletVerifier(BaseVerifier):
    """Re-authentication by an external wallet's signature over an EIP-4361 message."""

    #: The browser half, served at ``{prefix}/methods/wallet/browser.js`` (docs/browser.md).
    browser_module = files("stepup_wallet") / "browser.js"

    name = METHOD
    factor = Factor.REAUTH
    formats = (CredentialFormat.BLOCKCHAIN,)
    interaction = Interaction.MESSAGE
    label = "Wallet signature"
    #: Nothing is sent, but each begin stores a challenge: keep a loop from filling the store.
    begin_limits = (RateLimit(limit=10, window=60.0),)

    def __init__(self, settings: WalletSettings | None = None) -> None:
        self.settings = settings or WalletSettings()
        self.challenge_ttl = self.settings.message_ttl

    def __repr__(self) -> str:
        return f"WalletVerifier({self.settings!r})"

    # --- binding: the domain and URI the message names ----------------------------------

    def origin(self, ctx: VerifierContext) -> tuple[str, str]:
        """(domain, uri) from the settings, else from the server's public URL."""
        domain, uri = self.settings.domain, self.settings.uri
        if domain is None or uri is None:
            try:
                public = urlsplit(ctx.callback_url(METHOD))
            except StepUpError:
                raise ConfigError(
                    "set [plugins.wallet] domain and uri (or server.public_url): the wallet message "
                    "must name the site that asks for the signature"
                ) from None
            domain = domain or public.netloc
            uri = uri or f"{public.scheme}://{public.netloc}"
        return domain, uri

    def _message(
        self,
        ctx: VerifierContext,
        *,
        address: str,
        chain_id: int,
        statement: str,
        request_id: str,
        valid_until: float,
        resources: Sequence[str] = (),
    ) -> tuple[SiweMessage, str]:
        domain, uri = self.origin(ctx)
        now = ctx.clock.now()
        message = SiweMessage(
            domain=domain,
            address=address,
            statement=statement,
            uri=uri,
            version=VERSION,
            chain_id=chain_id,
            nonce=new_nonce(),
            issued_at=format_timestamp(now),
            expiration_time=format_timestamp(min(now + self.settings.message_ttl, valid_until)),
            request_id=request_id,
            resources=tuple(resources),
        )
        return message, format_message(message)

    def _check_signed(
        self,
        ctx: VerifierContext,
        *,
        issued: str,
        signed: str,
        signature: str,
        address: str,
        challenge_id: str,
    ) -> SiweMessage:
        """The shared core of verification and linking: the message is the issued one byte for
        byte, still valid, and signed by ``address``."""
        if not constant_time_equals(signed.encode("utf-8"), issued.encode("utf-8")):
            raise VerificationFailed(
                "the signed message is not the message issued for this challenge; sign it unchanged",
                reason="message_mismatch",
            )
        message = parse_message(issued)
        domain, _ = self.origin(ctx)
        try:
            check_message(message, now=ctx.clock.now(), domain=domain)
        except MessageRejected as exc:
            raise _rejection(exc, challenge_id) from None
        signer = recover_signer(issued, signature)
        if signer != address:
            raise VerificationFailed(
                f"the signature was made by {shorten_address(signer)}, not by the wallet "
                f"{shorten_address(address)} the message was issued for",
                reason="wrong_signer",
            )
        return message

    @staticmethod
    async def _record_nonce(ctx: VerifierContext, message: SiweMessage, challenge_id: str) -> None:
        """Each message is accepted once: its nonce goes into a replay ledger until it expires."""
        expires = timestamp_seconds(message.expiration_time) if message.expiration_time else ctx.clock.now()
        ttl = max(expires - ctx.clock.now(), 0.0) + 60.0
        if not await ctx.store.add(make_key(METHOD, "nonce", message.nonce), challenge_id, ttl=ttl):
            raise ReplayDetected("this signed message was already used; start a new challenge")

    # --- step-up --------------------------------------------------------------------------

    def eligible(self, credential: Credential) -> bool:
        """Embedded wallets never step up: the check leaves them out, and they do not make
        linking an external wallet require a ``credential:link`` token."""
        return not is_embedded(credential)

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        challenge = attempt.require_challenge()
        if not attempt.requested_scopes:
            raise ValidationError(
                "name the scopes this signature will allow: the wallet shows them to the person",
                [{"path": "requestedScopes", "message": "at least one scope is required for wallet verification"}],
            )
        wallet = select_wallet(attempt)
        address = wallet_address(wallet)
        chain_id = chain_id_of(wallet, self.settings.chain_id)
        scopes = tuple(attempt.requested_scopes)
        message, text = self._message(
            ctx,
            address=address,
            chain_id=chain_id,
            statement=scope_statement(self.settings.statement_prefix, scopes),
            request_id=challenge.id,
            valid_until=challenge.expires_at,
            resources=[SCOPE_RESOURCE_PREFIX + scope for scope in scopes],
        )
        return Begun(
            data={"message": text, "address": address, "chainId": chain_id, "expirationTime": message.expiration_time},
            state={"message": text, "address": address, "credentialId": wallet.id},
            credential_id=wallet.id,
        )

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        challenge = attempt.challenge
        if challenge is None or "message" not in challenge.state:
            raise InvalidResponse(
                "wallet verification needs the challengeId of a wallet challenge (POST /challenges)",
                field="challengeId",
            )
        signed = _require_text(attempt.params, "message")
        signature = _require_text(attempt.params, "signature")
        issued: str = challenge.state["message"]
        address: str = challenge.state["address"]
        credential_id: str = challenge.state["credentialId"]
        wallet = next((c for c in attempt.candidates if c.id == credential_id), None)
        if wallet is None:
            raise VerificationFailed("the wallet this challenge was issued for is no longer linked")
        if is_embedded(wallet):
            raise _embedded_refusal(wallet)
        if wallet_address(wallet) != address:
            raise VerificationFailed("the wallet's address changed since the challenge was issued")
        message = self._check_signed(
            ctx, issued=issued, signed=signed, signature=signature, address=address, challenge_id=challenge.id
        )
        await self._record_nonce(ctx, message, challenge.id)
        return Verification(credential_id=wallet.id, details={"chainId": message.chain_id})

    # --- linking a wallet -------------------------------------------------------------------

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        enrollment = attempt.require_challenge()
        try:
            address = parse_address(attempt.params.get("address"))
        except AddressError as exc:
            raise ValidationError(str(exc), [{"path": "params.address", "message": str(exc)}]) from None
        chain_id = attempt.params.get("chainId", self.settings.chain_id)
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id < 1:
            message = "chainId must be a positive integer (EIP-155 chain id)"
            raise ValidationError(message, [{"path": "params.chainId", "message": message}])
        self._ensure_not_linked(attempt.candidates, address)
        _, text = self._message(
            ctx,
            address=address,
            chain_id=chain_id,
            statement=LINK_STATEMENT,
            request_id=enrollment.id,
            valid_until=enrollment.expires_at,
        )
        return EnrollmentStep(
            data={"message": text, "address": address, "chainId": chain_id},
            state={"message": text, "address": address, "chainId": chain_id},
        )

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        enrollment = attempt.require_challenge()
        if "message" not in enrollment.state:
            raise EnrollmentFailed("no wallet link message was issued for this enrolment; start a new one")
        signature = _require_text(attempt.params, "signature")
        issued: str = enrollment.state["message"]
        signed = attempt.params.get("message", issued)
        if not isinstance(signed, str):
            raise InvalidResponse("response.message must be the signed message text", field="message")
        address: str = enrollment.state["address"]
        chain_id: int = enrollment.state["chainId"]
        self._ensure_not_linked(attempt.candidates, address)
        message = self._check_signed(
            ctx, issued=issued, signed=signed, signature=signature, address=address, challenge_id=enrollment.id
        )
        await self._record_nonce(ctx, message, enrollment.id)
        return NewCredential(
            format=CredentialFormat.BLOCKCHAIN,
            type=f"eip155:{chain_id}",
            identifier=address,
            alias=shorten_address(address),
            data={"walletProvider": "external"},
        )

    @staticmethod
    def _ensure_not_linked(candidates: Sequence[Credential], address: str) -> None:
        for credential in candidates:
            if (credential.identifier or "").lower() == address.lower():
                raise EnrollmentFailed(
                    f"wallet {shorten_address(address)} is already linked to this account",
                    credentialId=credential.id,
                )


def make_verifier(config: StepUpConfig) -> WalletVerifier:
    """Build the verifier from ``[plugins.wallet]``; a bad setting is a ConfigError naming it."""
    return WalletVerifier(config.plugin_section(METHOD, WalletSettings))
