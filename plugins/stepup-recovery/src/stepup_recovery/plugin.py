"""stepup hooks for recovery codes. Cheap to import."""

from __future__ import annotations

from stepup_core.plugins import method_hooks

stepup_register_verifiers, stepup_register_client_methods = method_hooks(
    "stepup_recovery.verifier:make_verifier", "stepup_recovery.client:RecoveryClientMethod"
)
