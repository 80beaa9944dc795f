"""Whole numbers read from outside (forms, query strings, URLs): one rule for all doors.

`str.isdigit()` is true for "²" and "٣", and `int()` reads any length, while the
database refuses anything past its INTEGER column (SQLite 8 bytes, PostgreSQL 4).
Every door reads numbers through `parse_int`: ASCII digits only, inside bounds.
"""

from __future__ import annotations

import re

# Ids and counters are INTEGER columns: PostgreSQL's is 4 bytes, the smaller of the two.
DB_INT_MAX = 2**31 - 1

_DIGITS = re.compile(r"-?[0-9]{1,19}")


class BadNumber(ValueError):
    """The text is not a whole number within the allowed bounds; the message says why."""


def parse_int(
    text: str | None,
    *,
    field: str = "number",
    minimum: int = 0,
    maximum: int = DB_INT_MAX,
) -> int:
    """The whole number written in `text` (ASCII digits, optional leading minus), or BadNumber."""
    value = (text or "").strip()
    if not _DIGITS.fullmatch(value):
        raise BadNumber(f"{field}: expected a whole number between {minimum} and {maximum}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise BadNumber(f"{field}: expected a whole number between {minimum} and {maximum}")
    return number


def int_or_none(text: str | None, *, minimum: int = 0, maximum: int = DB_INT_MAX) -> int | None:
    """Like parse_int, but None where the text is no number in bounds (optional fields)."""
    try:
        return parse_int(text, minimum=minimum, maximum=maximum)
    except BadNumber:
        return None
