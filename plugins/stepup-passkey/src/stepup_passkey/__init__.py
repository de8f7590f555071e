"""WebAuthn passkeys for stepup: the ``passkey`` method (server half on py_webauthn, client half on
fido2, and a software authenticator in :mod:`stepup_passkey.testing`)."""

from __future__ import annotations

__version__ = "0.1.0"
