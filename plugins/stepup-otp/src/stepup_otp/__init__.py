"""stepup-otp: email and SMS one-time codes for stepup, with SMTP and HTTP SMS gateway delivery."""

from __future__ import annotations

__version__ = "0.1.0"
