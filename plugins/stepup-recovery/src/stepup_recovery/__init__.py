"""stepup-recovery: single-use recovery codes for stepup, the fallback beside an MFA device.

The hooks live in :mod:`stepup_recovery.plugin`; code generation and normalisation in
:mod:`stepup_recovery.codes`; the server half in :mod:`stepup_recovery.verifier`; the client half
and the unattended code sheet in :mod:`stepup_recovery.client`.
"""

from __future__ import annotations

__version__ = "0.1.0"
