"""One exception tree for stepup.

Every error carries a stable ``code`` (put in the ``code`` member of an
``application/problem+json`` body by the server) and the HTTP ``status`` it maps to.
Messages say what was wrong and, where it helps, what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StepUpError(Exception):
    """Base of every error stepup raises on purpose."""

    code: ClassVar[str] = "stepup_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Step-up error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message


# --- configuration and plugins ---------------------------------------------------------


class ConfigError(StepUpError):
    code = "config_error"
    status = 500
    title = "Configuration error"


class PluginError(StepUpError):
    code = "plugin_error"
    status = 500
    title = "Plugin error"


# --- request shape -------------------------------------------------------------------


class MalformedRequest(StepUpError):
    code = "malformed_request"
    status = 400
    title = "Malformed request"


class UnsupportedMediaType(MalformedRequest):
    """A request body that is not JSON (stepup only reads ``application/json`` bodies)."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class HttpMethodNotAllowed(StepUpError):
    """The path exists, the HTTP method does not (``allowed`` lists the ones that do)."""

    code = "http_method_not_allowed"
    status = 405
    title = "HTTP method not allowed"


class PayloadTooLarge(StepUpError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class ValidationError(StepUpError):
    """A payload did not match its schema. ``errors`` lists every bad field path."""

    code = "validation_error"
    status = 422
    title = "Invalid payload"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class InvalidScope(ValidationError):
    code = "invalid_scope"
    title = "Invalid scope"

    def __init__(self, message: str, field: str = "scope") -> None:
        super().__init__(message, [{"path": field, "message": message}])


class SignInNotCompleted(ValidationError):
    """A redirect method's provider sent the browser back with an ``error`` and no ``state``: no
    challenge can be found, nothing changed, and the person starts again. ``providerError`` is
    the provider's error code when it is a plain word."""

    code = "sign_in_not_completed"
    title = "Sign-in not completed"

    def __init__(self, message: str, provider_error: str) -> None:
        super().__init__(message, [{"path": "state", "message": "the provider answered with an error and no state"}])
        self.details["providerError"] = provider_error


class NotFound(StepUpError):
    code = "not_found"
    status = 404
    title = "Not found"


class UnknownMethod(NotFound):
    code = "unknown_method"
    title = "Unknown verification method"


class CredentialNotFound(NotFound):
    code = "credential_not_found"
    title = "Credential not found"


class ChallengeNotFound(NotFound):
    code = "challenge_not_found"
    title = "Challenge not found"


# --- who is calling ------------------------------------------------------------------


class Unauthenticated(StepUpError):
    code = "unauthenticated"
    status = 401
    title = "Sign-in required"


class StepUpRequired(StepUpError):
    """The caller must step up for ``scope``; ``check`` holds the check result (wire form)."""

    code = "insufficient_user_authentication"
    status = 401
    title = "Step-up authentication required"

    def __init__(
        self,
        message: str,
        scope: str,
        check: Any = None,
        *,
        acr_values: tuple[str, ...] = (),
        max_age: float | None = None,
    ) -> None:
        details: dict[str, Any] = {"scope": scope}
        if acr_values:
            details["acrValues"] = list(acr_values)
        if max_age is not None:
            details["maxAge"] = int(max_age) if float(max_age).is_integer() else max_age
        super().__init__(message, **details)
        self.scope = scope
        self.check = check
        #: RFC 9470: the classes and the most seconds since authentication that would satisfy.
        self.acr_values = tuple(acr_values)
        self.max_age = max_age


# --- challenge and verification outcomes ---------------------------------------------


class ChallengeExpired(StepUpError):
    code = "challenge_expired"
    status = 410
    title = "Challenge expired"


class ChallengeUsed(StepUpError):
    code = "challenge_used"
    status = 409
    title = "Challenge already used"


class ChallengePending(StepUpError):
    code = "challenge_pending"
    status = 409
    title = "Challenge not completed"


class VerificationFailed(StepUpError):
    """The response did not prove possession of the credential."""

    code = "verification_failed"
    status = 400
    title = "Verification failed"


class InvalidResponse(VerificationFailed):
    """The response is malformed for this method (wrong fields or encoding)."""

    code = "invalid_response"
    title = "Malformed method response"


class VerifierCrashed(VerificationFailed):
    """The method raised something other than a stepup error; counted as a failed attempt."""

    code = "verifier_error"
    title = "Method error"


class ReplayDetected(VerificationFailed):
    code = "replay_detected"
    title = "Response already used"


class AttemptsExhausted(StepUpError):
    code = "attempts_exhausted"
    status = 429
    title = "Too many attempts"


class RetryLater(StepUpError):
    """Refused for now: try again in ``retry_after`` seconds (``retryAfter`` in the problem
    body and the ``Retry-After`` header)."""

    status = 429

    def __init__(self, message: str, retry_after: float = 0.0, **details: Any) -> None:
        super().__init__(message, retryAfter=round(retry_after, 3), **details)
        self.retry_after = retry_after


class LockedOut(RetryLater):
    code = "locked_out"
    title = "Temporarily locked"


class RateLimited(RetryLater):
    code = "rate_limited"
    title = "Too many requests"


class MethodNotAllowed(StepUpError):
    """The method may not mint for these scopes or this user (policy, MFA present)."""

    code = "method_not_allowed"
    status = 403
    title = "Method not allowed"


class NoEligibleCredential(StepUpError):
    code = "no_eligible_credential"
    status = 409
    title = "No eligible credential"


class EnrollmentFailed(StepUpError):
    code = "enrollment_failed"
    status = 400
    title = "Enrolment failed"


class DeliveryFailed(StepUpError):
    code = "delivery_failed"
    status = 502
    title = "Code delivery failed"


class ProviderUnavailable(StepUpError):
    """An outside party a method relies on (an identity provider, a gateway) could not be
    reached or answered with something unusable. Not a failed verification: it does not count
    toward the user's lockout."""

    code = "provider_unavailable"
    status = 502
    title = "Identity provider unavailable"


class StoreUnavailable(StepUpError):
    code = "store_unavailable"
    status = 503
    title = "Store unavailable"


class InvalidClient(Unauthenticated):
    """A service's credential for ``POST {prefix}/introspect`` is missing or not configured
    (RFC 7662 section 2.3: RFC 6749's ``invalid_client``)."""

    code = "invalid_client"
    title = "Invalid service credential"


class OriginNotAllowed(StepUpError):
    """A cross-origin (CORS) preflight from an origin that ``[server] cors_origins`` does not list."""

    code = "origin_not_allowed"
    status = 403
    title = "Origin not allowed"


# --- client side ---------------------------------------------------------------------


class ClientMethodMissing(StepUpError):
    """A method's client half is not installed; the message names the package."""

    code = "method_not_installed"
    status = 501
    title = "Method not installed"


class PromptUnavailable(StepUpError):
    """The prompter cannot reach a person: the terminal prompter found no terminal (standard
    input closed, as under a service manager, in CI or in a pipe that ran dry)."""

    code = "prompt_unavailable"
    status = 501
    title = "No one to prompt"


class ServerError(StepUpError):
    """The server answered with a problem the client has no narrower class for."""

    code = "server_error"
    status = 500
    title = "Server error"


#: Every error with a code of its own (a base such as :class:`RetryLater` has none).
ALL_ERRORS: tuple[type[StepUpError], ...] = tuple(
    cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, StepUpError) and (cls is StepUpError or "code" in vars(cls))
)


def error_for_code(code: str) -> type[StepUpError]:
    """The error class for a stable ``code`` (the client uses it to re-raise server problems)."""
    for cls in ALL_ERRORS:
        if cls.code == code:
            return cls
    return StepUpError
