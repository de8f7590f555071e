"""Wording and layout shared by what the ``stepup`` command prints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["counted", "text_table"]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and the noun in the number it needs: ``1 grant``, ``0 grants``, ``2 grants``.

    :param plural: the plural when it is not the noun and an ``s``.
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def text_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A table's lines: the header, a rule of dashes, then a line a row. Every column is padded
    to its widest cell, header included, with two spaces between columns, so each column starts
    at the same offset on every line; trailing spaces are trimmed."""
    cells = [tuple(row) for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in cells)]
