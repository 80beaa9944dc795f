"""The one rule for short text that can reach a mail header or a greeting.

Names of readers, newsletter names, sender names and subjects come through
every door (signup form, embed form, CSV import, CLI, preference centre,
composer) and end up in `To:`, `From:`, `Subject:`, `List-Id:` or in "Bonjour
{name},". Each door passes them through `one_line` (or a named wrapper below),
so what is stored is already one clean line:

- line breaks (CR, LF, U+2028, U+2029, NEL…), tabs and every other control
  character become a space, and runs of spaces become one;
- invisible format characters (bidi overrides, zero-width spaces, BOM) are
  dropped, except the zero-width joiners that some scripts and emoji need;
- a NUL byte is refused (UnusableText): it is never typed by a person, and
  PostgreSQL cannot store it, so silently dropping it would hide a broken file;
- the result is NFC-normalised, stripped and cut to a maximum length.
"""

from __future__ import annotations

import re
import unicodedata

PERSON_NAME_MAX = 200  # Subscriber.name, Delivery.name
NEWSLETTER_NAME_MAX = 200  # Newsletter.name
SENDER_NAME_MAX = 200  # Newsletter.sender_name
SUBJECT_MAX = 300  # Edition.subject, preheader, rendered_subject

# Zero-width (non-)joiner: format characters that Persian, Indic scripts and emoji need.
_KEPT_FORMAT = frozenset("\u200c\u200d")
_SPACES = re.compile(" {2,}")


class UnusableText(ValueError):
    """Text that cannot be kept as typed; the message names the field and says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _char(char: str) -> str:
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):
        return " "
    if category == "Cf":
        return char if char in _KEPT_FORMAT else ""
    if category == "Cs":
        return "\ufffd"  # a lone surrogate (undecodable bytes on a command line) cannot be sent
    return char


def one_line(value: str, *, limit: int, field: str = "text") -> str:
    """`value` as one clean line of at most `limit` characters (see the module doc).

    Raises UnusableText when it holds a NUL character. Idempotent.
    """
    if "\x00" in value:
        raise UnusableText(field, "contains a NUL character (\\0); remove it and try again")
    # isprintable() is False for every character _char changes (and for other spaces
    # than U+0020, which it keeps): most names skip the loop.
    cleaned = value if value.isprintable() else "".join(map(_char, value))
    if not cleaned.isascii():
        cleaned = unicodedata.normalize("NFC", cleaned)
    if "  " in cleaned:
        cleaned = _SPACES.sub(" ", cleaned)
    cleaned = cleaned.strip()
    if len(cleaned) > limit:
        cleaned = cleaned[:limit].rstrip()
    return cleaned


def person_name(value: str, field: str = "name") -> str:
    """A reader's name, as it may appear in `To:` and in the greeting."""
    return one_line(value, limit=PERSON_NAME_MAX, field=field)


def newsletter_name(value: str, field: str = "name") -> str:
    """A newsletter's name, as it appears in `List-Id:` and in pages."""
    return one_line(value, limit=NEWSLETTER_NAME_MAX, field=field)


def sender_name(value: str, field: str = "sender name") -> str:
    """The display name of `From:`."""
    return one_line(value, limit=SENDER_NAME_MAX, field=field)


def subject(value: str, field: str = "subject") -> str:
    """An edition's subject or preheader."""
    return one_line(value, limit=SUBJECT_MAX, field=field)
