"""stepup-totp: authenticator-app (TOTP, RFC 6238) verification for stepup.

The hooks live in :mod:`stepup_totp.plugin`; the arithmetic and URI policy in
:mod:`stepup_totp.otp`; the server half in :mod:`stepup_totp.verifier`; the client half and the
unattended authenticator app in :mod:`stepup_totp.client`.
"""

from __future__ import annotations

__version__ = "0.1.0"
