"""The client half: sign the server's EIP-4361 message with a wallet.

A :class:`Signer` is anything with an ``address`` and an async ``sign_message`` that returns an
EIP-191 ``personal_sign`` signature as hex. :class:`LocalKeySigner` keeps a secp256k1 key in
memory (eth-account). External wallets plug in by implementing the same two members, for
example::

    class HardwareWalletSigner:
        def __init__(self, device):
            self.device = device
            self.address = device.get_address("m/44'/60'/0'/0/0")

        async def sign_message(self, message: str) -> str:
            # the device shows the message and asks the person to confirm
            return await self.device.personal_sign(message)

A WalletConnect bridge does the same with a ``personal_sign`` request to the paired wallet
(params ``[message_hex, address]``). Without any signer the method prints the message and asks
the person to paste the signature their wallet produced.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from stepup_core.client.method import Answer, ClientContext
from stepup_core.errors import ServerError, VerificationFailed

from .addresses import AddressError, parse_address
from .eip4361 import MessageFormatError, parse_message
from .verifier import METHOD, PACKAGE

#: Order of the secp256k1 group: a private key is an integer in [1, N).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@runtime_checkable
class Signer(Protocol):
    """A wallet that can sign EIP-191 ``personal_sign`` messages."""

    @property
    def address(self) -> str:
        """The account address (EIP-55 form or lowercase)."""
        ...

    async def sign_message(self, message: str) -> str:
        """Sign ``message`` (UTF-8 text) with ``personal_sign``; return the 65-byte signature
        as ``0x``-prefixed hex."""
        ...


class LocalKeySigner:
    """A wallet key held in this process (eth-account). For tests, demos and server-side
    automation; people usually sign with their own wallet."""

    def __init__(self, private_key: str | bytes) -> None:
        from eth_account import Account

        self._account = Account.from_key(private_key)
        self._address: str = self._account.address

    @property
    def address(self) -> str:
        return self._address

    @classmethod
    def generate(cls) -> LocalKeySigner:
        """A signer with a fresh random key (from :mod:`secrets`)."""
        while True:
            key = secrets.token_bytes(32)
            if 0 < int.from_bytes(key, "big") < SECP256K1_N:
                return cls(key)

    async def sign_message(self, message: str) -> str:
        from eth_account.messages import encode_defunct

        signed = self._account.sign_message(encode_defunct(text=message))
        return "0x" + bytes(signed.signature).hex()

    def __repr__(self) -> str:
        return f"LocalKeySigner(address={self._address!r})"


def _signer(ctx: ClientContext) -> Signer | None:
    candidate = ctx.options.get("signer") or ctx.actor
    if candidate is None:
        return None
    if not isinstance(candidate, Signer):
        raise TypeError(
            f"signer must have an address and an async sign_message(message) -> str, got {type(candidate).__name__}"
        )
    return candidate


def _message_of(payload: Mapping[str, Any], what: str) -> str:
    data = payload.get("data")
    message = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(message, str) or not message:
        raise ServerError(f"the {what} carries no message to sign")
    return message


def _ensure_signer_matches(message: str, signer: Signer) -> None:
    """Refuse to sign a message that is not a well-formed EIP-4361 message for this signer's
    address: a signature is consent, so sign only what names the account."""
    try:
        parsed = parse_message(message)
        own = parse_address(signer.address)
    except (MessageFormatError, AddressError) as exc:
        raise VerificationFailed(f"refusing to sign: {exc}") from None
    if parsed.address != own:
        raise VerificationFailed(
            f"the message is for wallet {parsed.address}, but the signer holds {own}; pass the signer "
            "of that wallet, or start the challenge with the credentialId of this one"
        )


async def _sign(message: str, ctx: ClientContext, label: str) -> str:
    signer = _signer(ctx)
    if signer is not None:
        _ensure_signer_matches(message, signer)
        return await signer.sign_message(message)
    await ctx.prompter.tell(f"Sign this message with your wallet (personal_sign):\n\n{message}\n")
    return (await ctx.prompter.ask_code(label)).strip()


class WalletClientMethod:
    """Answers ``wallet`` challenges and enrolments with a :class:`Signer`.

    Options: ``signer=`` (a :class:`Signer`), ``chain_id=`` (when linking). Without a signer the
    person is shown the message and pastes the signature.
    """

    name = METHOD
    package = PACKAGE

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        message = _message_of(challenge, "wallet challenge")
        signature = await _sign(message, ctx, "Signature from your wallet (0x...)")
        return Answer(response={"message": message, "signature": signature})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        signer = _signer(ctx)
        address = signer.address if signer is not None else await ctx.prompter.ask_code("Wallet address to link")
        params: dict[str, Any] = {"address": address.strip()}
        chain_id = ctx.options.get("chain_id")
        if chain_id is not None:
            params["chainId"] = chain_id
        return params

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        message = _message_of(enrollment, "wallet enrolment")
        signature = await _sign(message, ctx, "Signature from your wallet (0x...)")
        return {"message": message, "signature": signature}

    def unattended(self) -> LocalKeySigner:
        return LocalKeySigner.generate()
