"""The hook's named verifiers (``send_otp``, ``verify_otp``, ``verify_wallet``,
``verify_social``, ``verify_passkey_mfa``, ``verify_totp_mfa``, ``verify_recovery_code``),
mixed into :class:`~stepup_core.client.StepUpClient`.

Each names the method it mirrors and hands the work to the method exchange; the re-
authentication ones record a failure in ``state.error`` and answer None, the MFA ones record
and raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..errors import ChallengeExpired, ChallengeNotFound, ChallengeUsed, ClientMethodMissing, StepUpError
from ..models import CheckResult, CredentialFormat, IssuedToken

if TYPE_CHECKING:
    from .exchange import MethodExchange

T = TypeVar("T")
#: The methods the hook's named verifiers run.
_OTP, _WALLET, _SOCIAL, _PASSKEY, _TOTP, _RECOVERY = "otp", "wallet", "social", "passkey", "totp", "recovery"


@attrs.frozen
class OtpSent:
    """What :meth:`StepUpClient.send_otp` answers."""

    verification_type: str
    credential_id: str
    destination: str | None = None


class HookVerifiers:
    """The named verifiers of the hook; :class:`StepUpClient` provides the state they use."""

    credential_id: str | None
    last_check: CheckResult | None
    exchange: MethodExchange

    if TYPE_CHECKING:

        def _record(self, error: StepUpError) -> StepUpError: ...

        async def _guarded(self, work: Awaitable[T]) -> T: ...

        def _scopes(self, scope: str | None, requested_scopes: Iterable[str] | None) -> tuple[str, ...]: ...

        async def _run(
            self,
            method: str,
            requested_scopes: Iterable[str] | None,
            *,
            credential_id: str | None = None,
            options: Mapping[str, Any] | None = None,
            params: Mapping[str, Any] | None = None,
            timeout: float | None = None,
            transaction: Mapping[str, Any] | None = None,
        ) -> IssuedToken: ...

    def _credential_for(
        self, method: str, explicit: str | None, formats: Iterable[CredentialFormat] = ()
    ) -> str | None:
        """The credential a verify call uses: the argument, else the client's ``credential_id``
        when it belongs to ``method`` (or when no check told us what it is)."""
        if explicit is not None:
            return explicit
        if self.credential_id is None:
            return None
        known = {c.id: c for c in (self.last_check.credentials if self.last_check else ())}
        credential = known.get(self.credential_id)
        if credential is None or credential.method == method or credential.format in set(formats):
            return self.credential_id
        return None

    # --- re-authentication verifiers: failures are recorded, not raised ----------------------

    async def send_otp(
        self,
        credential_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> OtpSent:
        """Send a one-time code (``otp`` challenge). The default credential is the client's
        ``credential_id``, else the first sign-in email or phone from the last check. With
        ``transaction`` the code is bound to those details and its message says what it
        approves. Raises on failure (and records it)."""
        return await self._guarded(self._send_otp(credential_id, requested_scopes, transaction))

    async def _send_otp(
        self,
        credential_id: str | None,
        requested_scopes: Iterable[str] | None,
        transaction: Mapping[str, Any] | None = None,
    ) -> OtpSent:
        scopes = self._scopes(None, requested_scopes)
        codes = (CredentialFormat.EMAIL, CredentialFormat.PHONE_NUMBER)
        chosen = self._credential_for(_OTP, credential_id, codes) or self._default_credential(codes)
        challenge = await self.exchange.begin(_OTP, scopes, credential_id=chosen, transaction=transaction)
        data = challenge.get("data") or {}
        return OtpSent(
            verification_type=str(data.get("verificationType", "email")),
            credential_id=str(self.exchange.pending[_OTP].credential_id or ""),
            destination=data.get("destination"),
        )

    def _default_credential(self, formats: Iterable[CredentialFormat]) -> str | None:
        """The first sign-in credential of ``formats`` from the last check, else the first one."""
        wanted = set(formats)
        credentials = [c for c in (self.last_check.credentials if self.last_check else ()) if c.format in wanted]
        signed_in = next((c for c in credentials if c.sign_in), None)
        chosen = signed_in or (credentials[0] if credentials else None)
        return chosen.id if chosen else None

    async def verify_otp(
        self,
        code: str,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken | None:
        """Verify the code :meth:`send_otp` sent. Calling it first is an error (raised); a wrong
        code is recorded in ``state.error`` and answers None. The code is bound to the details
        it was sent for; ``transaction``, when given, must be those details."""
        pending = self.exchange.pending.get(_OTP)
        if pending is None:
            raise self._record(ChallengeNotFound("no code was sent yet: call send_otp() before verify_otp()"))
        scopes = tuple(requested_scopes) if requested_scopes is not None else pending.requested_scopes
        try:
            return await self.exchange.verify(
                _OTP, {"code": str(code).strip()}, scopes, challenge_id=pending.challenge_id, transaction=transaction
            )
        except StepUpError as exc:
            spent = isinstance(exc, ChallengeExpired | ChallengeUsed | ChallengeNotFound)
            if spent or exc.code == "attempts_exhausted":
                self.exchange.pending.pop(_OTP, None)
            self._record(exc)
            return None

    async def verify_wallet(
        self,
        signer: Any = None,
        wallet_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken | None:
        """Sign the server's message with the wallet (``signer`` reaches the wallet client
        method); with ``transaction`` the message states the details and carries their hash.
        A failure is recorded in ``state.error`` and answers None; a missing stepup-wallet
        raises."""
        return await self._soft(
            self._run(
                _WALLET,
                requested_scopes,
                credential_id=self._credential_for(_WALLET, wallet_id, (CredentialFormat.BLOCKCHAIN,)),
                options={"signer": signer},
                transaction=transaction,
            )
        )

    async def verify_social(
        self,
        provider: str,
        open_url: Any = None,
        timeout: float | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken | None:
        """Sign in again with ``provider`` in a browser (``open_url(url)`` opens it), then wait
        for the server's callback (bound to ``transaction`` when given; social sign-in cannot
        commit to it). A failure or timeout is recorded in ``state.error`` and answers None; a
        missing stepup-social raises."""
        return await self._soft(
            self._run(
                _SOCIAL,
                requested_scopes,
                options={"open_url": open_url, "provider": provider},
                params={"provider": provider},
                timeout=timeout,
                transaction=transaction,
            )
        )

    async def _soft(self, work: Awaitable[IssuedToken]) -> IssuedToken | None:
        """Run ``work``; a failure is recorded and answers None, except a missing client half."""
        try:
            return await work
        except ClientMethodMissing as exc:
            raise self._record(exc) from None
        except StepUpError as exc:
            self._record(exc)
            return None

    # --- MFA verifiers: failures are recorded and raised --------------------------------------

    async def verify_passkey_mfa(
        self,
        authenticator: Any = None,
        credential_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Answer a passkey challenge with ``authenticator`` (or the passkey client method's
        default); with ``transaction`` the assertion commits to the details' hash. Records and
        raises failures."""
        return await self._guarded(
            self._run(
                _PASSKEY,
                requested_scopes,
                credential_id=self._credential_for(_PASSKEY, credential_id, (CredentialFormat.PASSKEY,)),
                options={"authenticator": authenticator},
                transaction=transaction,
            )
        )

    async def verify_totp_mfa(
        self,
        code: str,
        device_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Verify a code from an authenticator app (bound to ``transaction`` when given; the
        code cannot commit to it). Records and raises failures."""
        device = self._credential_for(_TOTP, device_id, (CredentialFormat.TOTP,))
        return await self._guarded(self._verify_code(_TOTP, code, requested_scopes, device, transaction))

    async def verify_recovery_code(
        self,
        code: str,
        *,
        requested_scopes: Iterable[str] | None = None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Verify a single-use recovery code (bound to ``transaction`` when given). Records and
        raises failures."""
        return await self._guarded(self._verify_code(_RECOVERY, code, requested_scopes, None, transaction))

    async def _verify_code(
        self,
        method: str,
        code: str,
        requested_scopes: Iterable[str] | None,
        credential_id: str | None,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        scopes = self._scopes(None, requested_scopes)
        return await self.exchange.verify(
            method, {"code": str(code).strip()}, scopes, credential_id=credential_id, transaction=transaction
        )
