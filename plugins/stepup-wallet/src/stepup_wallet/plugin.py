"""Hook implementations of stepup-wallet. Registration imports nothing heavy: eth-account is
loaded the first time a wallet is challenged, verified or signed with."""

from __future__ import annotations

from stepup_core.plugins import method_hooks

stepup_register_verifiers, stepup_register_client_methods = method_hooks(
    "stepup_wallet.verifier:make_verifier", "stepup_wallet.client:WalletClientMethod"
)
