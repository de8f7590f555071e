"""stepup hooks for authenticator apps. Cheap to import: pyotp and segno load on first use."""

from __future__ import annotations

from stepup_core.plugins import method_hooks

stepup_register_verifiers, stepup_register_client_methods = method_hooks(
    "stepup_totp.verifier:make_verifier", "stepup_totp.client:TotpClientMethod"
)
