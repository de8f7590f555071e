"""stepup: step-up authentication for Python services."""

from __future__ import annotations

from .hookspecs import hookimpl
from .models import Credential, CredentialFormat, Factor, Interaction, Principal

__all__ = ["Credential", "CredentialFormat", "Factor", "Interaction", "Principal", "hookimpl"]
__version__ = "0.1.0"
