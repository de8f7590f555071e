"""Generating, formatting and normalising recovery codes."""

from __future__ import annotations

import re

import pytest
from stepup_recovery.codes import (
    ALPHABET,
    BITS_PER_CODE,
    MAX_INPUT_LENGTH,
    format_code,
    generate_code,
    generate_codes,
    normalize_code,
)

CODE_RE = re.compile(rf"^[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")


def test_alphabet_is_32_unambiguous_symbols_so_a_code_holds_50_bits() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("ilou") & set(ALPHABET)
    assert ALPHABET.lower() == ALPHABET
    assert BITS_PER_CODE == 50


def test_generated_codes_are_grouped_random_and_use_every_symbol() -> None:
    codes = [generate_code() for _ in range(2000)]
    assert all(CODE_RE.match(code) for code in codes)
    assert len(set(codes)) == len(codes)
    assert set("".join(codes).replace("-", "")) == set(ALPHABET)


def test_a_set_has_distinct_codes() -> None:
    codes = generate_codes(100)
    assert len(codes) == len(set(codes)) == 100
    with pytest.raises(ValueError):
        generate_codes(0)


def test_format_groups_by_five() -> None:
    assert format_code("7k2mqx9c4d") == "7k2mq-x9c4d"


@pytest.mark.parametrize(
    "typed",
    [
        "7k2mq-x9c4d",
        "7K2MQ-X9C4D",
        "7k2mqx9c4d",
        " 7k2mq x9c4d ",
        "7k2-mqx-9c4d",
        "7k2mq\tx9c4d\n",
        "\uff17\uff2b\uff12\uff2d\uff31-\uff38\uff19\uff23\uff14\uff24",  # full-width
    ],
)
def test_normalisation_forgives_case_spaces_dashes_and_width(typed: str) -> None:
    assert normalize_code(typed) == "7k2mqx9c4d"


def test_confusable_letters_read_as_digits() -> None:
    assert normalize_code("o1lIO-00000") == "0111000000"
    assert normalize_code("abcde-fghjk") == "abcdefghjk"


@pytest.mark.parametrize(
    "typed",
    ["", "7k2mq", "7k2mq-x9c4", "7k2mq-x9c4dd", "7k2mq-x9c4u", "7k2mq_x9c4d", "7k2mq.x9c4d", "7k2mq-x9c4é"],
)
def test_what_cannot_be_a_code_is_refused(typed: str) -> None:
    assert normalize_code(typed) is None


def test_very_long_input_is_refused_before_any_work() -> None:
    assert normalize_code("-" * MAX_INPUT_LENGTH + "7k2mqx9c4d") is None
    assert normalize_code(" " * (MAX_INPUT_LENGTH - 10) + "7k2mqx9c4d") == "7k2mqx9c4d"
