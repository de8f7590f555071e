"""How a linked provider account is named: issuer and subject, never an email address."""

from __future__ import annotations


def subject_identifier(issuer: str, subject: str) -> str:
    """The identifier stored on a linked account: ``"<issuer> <subject>"``.

    An issuer never contains white space, so the first space splits the pair unambiguously
    whatever the subject holds. Applications that supply social credentials through
    ``stepup_user_credentials`` build their ``identifier`` with this function.
    """
    if not issuer or any(c.isspace() for c in issuer):
        raise ValueError("an issuer is a non-empty string without white space")
    if not subject:
        raise ValueError("a subject is a non-empty string")
    return f"{issuer} {subject}"


def mask(value: str) -> str:
    """A display form that hints at an account without spelling it out."""
    local, at, domain = value.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return f"{value[:2]}***" if len(value) > 2 else "***"
