"""The one error this method adds to the core's tree."""

from __future__ import annotations

from stepup_core.errors import StepUpError


class ProviderUnavailable(StepUpError):
    """The identity provider could not be reached or answered with something unusable.

    Not a failed verification: it does not count toward the user's lockout. At ``begin`` it
    refuses the challenge; at the callback it fails the challenge (start a new one).
    """

    code = "provider_unavailable"
    status = 502
    title = "Identity provider unavailable"
