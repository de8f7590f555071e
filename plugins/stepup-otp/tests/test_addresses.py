from __future__ import annotations

import pytest
from stepup_otp.addresses import (
    InvalidAddress,
    mask_email,
    mask_phone_number,
    normalize_email,
    normalize_phone_number,
)

from stepup_core.errors import ValidationError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("jane@example.com", "jane@example.com"),
        ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),
        ("  jane+stepup@example.co.uk ", "jane+stepup@example.co.uk"),
        ("o'brien@mail.example.org", "o'brien@mail.example.org"),
        ("x@b\u00fccher.example", "x@xn--bcher-kva.example"),
        ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
    ],
)
def test_valid_emails_are_normalised(given: str, expected: str) -> None:
    assert normalize_email(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("jane", "exactly one '@'"),
        ("jane@@example.com", "exactly one '@'"),
        ("a@b@example.com", "exactly one '@'"),
        ("@example.com", "nothing before"),
        ("jane@", "no domain"),
        ("jane@localhost", "at least one dot"),
        ("jane@example..com", "empty label"),
        ("jane@-example.com", "label"),
        ("jane@example-.com", "label"),
        ("jane@example.123", "end in a name"),
        ("jane@[192.0.2.1]", "address literals"),
        (".jane@example.com", "single dots"),
        ("jane.@example.com", "single dots"),
        ("ja..ne@example.com", "single dots"),
        ('"jane doe"@example.com', "spaces"),
        ("jane(comment)@example.com", "single dots"),
        ("j\u00e4ne@example.com", "single dots"),
        ("jane@exa mple.com", "spaces"),
        ("jane@example.com\r\nBcc: victim@example.org", "spaces"),
        ("jane\x00@example.com", "control"),
        ("a" * 65 + "@example.com", "longer than 64"),
        ("a@" + ".".join(["b" * 63] * 4) + ".com", "longer than 254"),
        ("a@" + "b" * 64 + ".com", "label"),
    ],
)
def test_invalid_emails_are_refused_with_a_reason(given: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_email(given, "params.email")
    assert reason in caught.value.message
    assert caught.value.errors == [{"path": "params.email", "message": caught.value.message}]
    assert isinstance(caught.value, ValidationError)
    assert caught.value.code == "validation_error"


@pytest.mark.parametrize("given", [None, 42, ["jane@example.com"]])
def test_non_string_email_is_refused(given: object) -> None:
    with pytest.raises(InvalidAddress, match="must be a string"):
        normalize_email(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+14155554567", "+14155554567"),
        ("+1 (415) 555-4567", "+14155554567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+49.30.1234567", "+49301234567"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_valid_phone_numbers_become_e164(given: str, expected: str) -> None:
    assert normalize_phone_number(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "14155554567",  # no +
        "+04155554567",  # country code cannot start with 0
        "+1234567",  # 7 digits
        "+1234567890123456",  # 16 digits
        "+1415555456a",
        "+1415555\u0664567",  # non-ASCII digit
        "++14155554567",
        "",
        "+1 415 555 4567 ext 2",
    ],
)
def test_invalid_phone_numbers_are_refused(given: str) -> None:
    with pytest.raises(InvalidAddress, match=r"E\.164"):
        normalize_phone_number(given, "params.phoneNumber")


def test_masks_show_enough_to_recognise_and_no_more() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("j@example.com") == "j***@example.com"
    assert mask_phone_number("+14155554567") == "+1******4567"
    assert mask_phone_number("+442079460958") == "+4*******0958"
    assert mask_phone_number("+12345678") == "+1***5678"
