"""stepup-wallet: step up by signing an EIP-4361 message with an external Ethereum wallet.

The server half is :class:`~stepup_wallet.verifier.WalletVerifier`; the client half is
:class:`~stepup_wallet.client.WalletClientMethod` with a :class:`~stepup_wallet.client.Signer`.
"""

from __future__ import annotations

__version__ = "0.1.0"
