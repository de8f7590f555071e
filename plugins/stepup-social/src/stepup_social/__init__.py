"""stepup-social: re-authentication through OAuth 2.0 and OpenID Connect providers."""

from __future__ import annotations

from .identity import subject_identifier

__all__ = ["subject_identifier"]
__version__ = "0.1.0"
