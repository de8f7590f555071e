"""Email addresses and phone numbers: validation, normalisation and masking.

Email syntax check
------------------
stepup-otp sends codes to a mailbox, so an address must be one a mail server will route. The
check accepts the common, unquoted form of RFC 5321/5322 and refuses everything else with a
message that says why:

- at most 254 characters in all, exactly one ``@``;
- a local part of 1 to 64 characters, a *dot-atom*: letters, digits and
  ``!#$%&'*+/=?^_`{|}~-``, in runs separated by single dots, neither starting nor ending with
  a dot. Quoted local parts (``"john smith"@example.com``) and non-ASCII local parts are refused:
  few mail systems deliver to them;
- a domain of at least two labels. An internationalised domain is converted to its ASCII
  (IDNA) form. Each label is 1 to 63 letters, digits or hyphens, neither starting nor ending
  with a hyphen; the last label is not all digits. Address literals (``user@[192.0.2.1]``) are
  refused.

The domain is lower-cased; the local part keeps its case (mail servers may treat it as
significant). The check does not look up DNS: whether an address receives mail is proven by
the code sent to it.

Phone numbers
-------------
E.164: ``+``, a country code not starting with 0, 8 to 15 digits in all. Spaces, hyphens, dots
and parentheses typed for readability are removed first (``+1 (415) 555-4567``).
"""

from __future__ import annotations

import re

from stepup_core.errors import ValidationError

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
MAX_LABEL_LENGTH = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")


class InvalidAddress(ValidationError):
    """An email address or phone number failed validation (``path`` names the field)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, [{"path": field, "message": message}])
        self.field = field


def normalize_email(value: object, field: str = "email") -> str:
    """Validate an email address and return it with its domain lower-cased.

    :raises InvalidAddress: naming ``field`` and what is wrong.
    """
    if not isinstance(value, str):
        raise InvalidAddress(f"{field} must be a string", field)
    address = value.strip()
    if not address:
        raise InvalidAddress(f"{field} is empty", field)
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in address):
        raise InvalidAddress(f"{field} must not contain spaces or control characters", field)
    if address.count("@") != 1:
        raise InvalidAddress(f"{field} must contain exactly one '@'", field)
    local, domain = address.split("@")
    if not local:
        raise InvalidAddress(f"{field} has nothing before the '@'", field)
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise InvalidAddress(f"{field}: the part before '@' is longer than 64 characters", field)
    if not local.isascii() or not _DOT_ATOM.fullmatch(local):
        raise InvalidAddress(
            f"{field}: the part before '@' may hold letters, digits and !#$%&'*+/=?^_`{{|}}~- "
            "separated by single dots",
            field,
        )
    ascii_domain = _ascii_domain(domain, field)
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidAddress(f"{field} is longer than {MAX_EMAIL_LENGTH} characters", field)
    return normalized


def _ascii_domain(domain: str, field: str) -> str:
    if not domain:
        raise InvalidAddress(f"{field} has no domain after the '@'", field)
    if domain.startswith("["):
        raise InvalidAddress(f"{field}: address literals such as [192.0.2.1] are not accepted", field)
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidAddress(f"{field}: the domain is not a valid internationalised name", field) from None
    domain = domain.lower()
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidAddress(f"{field}: the domain needs at least one dot (example.com)", field)
    for label in labels:
        if not label:
            raise InvalidAddress(f"{field}: the domain has an empty label (two dots in a row?)", field)
        if len(label) > MAX_LABEL_LENGTH or not _LABEL.fullmatch(label):
            raise InvalidAddress(
                f"{field}: domain label {label!r} must be 1-63 letters, digits or inner hyphens", field
            )
    if labels[-1].isdigit():
        raise InvalidAddress(f"{field}: the domain must end in a name, not a number", field)
    return domain


def normalize_phone_number(value: object, field: str = "phoneNumber") -> str:
    """Validate a phone number and return it in E.164 form (``+14155554567``).

    :raises InvalidAddress: naming ``field`` and what is wrong.
    """
    if not isinstance(value, str):
        raise InvalidAddress(f"{field} must be a string", field)
    number = _PHONE_SEPARATORS.sub("", value)
    if not _E164.fullmatch(number):
        raise InvalidAddress(
            f"{field} must be in international E.164 form: '+', the country code and the number, "
            "8 to 15 digits in all (for example +14155554567)",
            field,
        )
    return number


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone_number(number: str) -> str:
    """``+14155554567`` -> ``+1******4567``: the first and the last four digits stay."""
    digits = number.lstrip("+")
    if len(digits) <= 5:
        return "+" + "*" * len(digits)
    return "+" + digits[0] + "*" * (len(digits) - 5) + digits[-4:]


def same_email(a: str, b: str) -> bool:
    """Whether two addresses name the same mailbox for duplicate detection (case-insensitive)."""
    return a.casefold() == b.casefold()
