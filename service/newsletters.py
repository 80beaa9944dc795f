"""Newsletters: create, find and list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import text
from service.addresses import InvalidAddress, for_sending, normalise
from service.models import Newsletter
from service.team import audit

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")


class BadNewsletter(ValueError):
    """A value given for a new newsletter is unusable; the message says which and why."""


class UnknownNewsletter(LookupError):
    """No newsletter has that slug."""


def create(
    session: Session,
    *,
    slug: str,
    name: str,
    sender_email: str,
    sender_name: str | None = None,
    language: str = "fr",
    reply_to: str | None = None,
    postal_address: str = "",
    website_url: str | None = None,
    description: str = "",
    send_weekday: int = 5,
    send_time: time = time(8, 0),
    timezone: str = "Europe/Paris",
) -> Newsletter:
    """Create a newsletter; the slug names it in URLs and on the command line.

    Raises BadNewsletter (a ValueError) saying which value is unusable; the
    name and sender name pass the header rule of service.text.
    """
    if language not in ("fr", "en"):
        raise BadNewsletter(f"unsupported language {language!r} (fr or en)")
    if timezone not in time_zones():
        raise BadNewsletter(f"unknown time zone {timezone[:64]!r} (e.g. Europe/Paris)")
    if not _SLUG.fullmatch(slug):
        raise BadNewsletter(
            f"slug {slug!r}: use 1 to 80 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    try:
        clean_name = text.newsletter_name(name)
        clean_sender_name = text.sender_name(sender_name or "") or clean_name
        address = normalise(sender_email)
        reply_address = normalise(reply_to) if reply_to else None
    except (text.UnusableText, InvalidAddress) as exc:
        raise BadNewsletter(str(exc)) from exc
    if not clean_name:
        raise BadNewsletter("name: required")
    if reply_address and not for_sending(reply_address).isascii():
        raise BadNewsletter(f"reply-to {reply_address}: the part before the @ must be ASCII")
    if not for_sending(address).isascii():
        # Every message would then need SMTPUTF8 from the relay; a sender is chosen once.
        raise BadNewsletter(f"sender {address}: the part before the @ must be ASCII")
    newsletter = Newsletter(
        slug=slug,
        name=clean_name,
        sender_email=address,
        sender_name=clean_sender_name,
        language=language,
        reply_to=reply_address,
        postal_address=postal_address,
        website_url=website_url,
        description=description,
        send_weekday=send_weekday,
        send_time=send_time,
        timezone=timezone,
    )
    session.add(newsletter)
    session.flush()
    return newsletter


def get_by_slug(session: Session, slug: str) -> Newsletter:
    """The newsletter with this slug, or UnknownNewsletter."""
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise UnknownNewsletter(f"no newsletter with slug {slug!r}")
    return newsletter


def list_all(session: Session) -> list[Newsletter]:
    """Every newsletter, by name."""
    return list(session.scalars(select(Newsletter).order_by(Newsletter.name)))


def set_tracking(session: Session, slug: str, on: bool) -> Newsletter:
    """Turn open and click tracking on or off for editions frozen from now on.

    Editions already sent keep what they went out with (service.editions.store.is_tracked).
    """
    newsletter = get_by_slug(session, slug)
    newsletter.tracking = on
    session.flush()
    return newsletter


# --- settings ------------------------------------------------------------------------------

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LANGUAGES = ("fr", "en")
DESCRIPTION_MAX = 2000
POSTAL_LINES_MAX = 6
POSTAL_LINE_MAX = 200
URL_MAX = 500
TIMEZONE_MAX = 64
SETTINGS_FIELDS = (
    "name",
    "description",
    "sender_name",
    "sender_email",
    "reply_to",
    "postal_address",
    "language",
    "timezone",
    "send_weekday",
    "send_time",
    "tracking",
    "website_url",
)
_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0", ""})


def N_(message: str) -> str:  # noqa: N802 - the gettext marker pybabel extracts
    """Mark a message for translation; the doors translate it when they show it."""
    return message


class _Bad(ValueError):
    """One field's value is unusable; the message is the English reason."""


def settings_of(newsletter: Newsletter) -> dict[str, object]:
    """The settings as plain values (the CLI's --json, the form's first values)."""
    return {
        "slug": newsletter.slug,
        "name": newsletter.name,
        "description": newsletter.description,
        "sender_name": newsletter.sender_name,
        "sender_email": newsletter.sender_email,
        "reply_to": newsletter.reply_to or "",
        "postal_address": newsletter.postal_address,
        "language": newsletter.language,
        "timezone": newsletter.timezone,
        "send_weekday": WEEKDAYS[newsletter.send_weekday],
        "send_time": newsletter.send_time.strftime("%H:%M"),
        "tracking": newsletter.tracking,
        "website_url": newsletter.website_url or "",
    }


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """Every IANA time zone name this system knows."""
    return frozenset(available_timezones())


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(N_("must be text"))
    if "\x00" in value:
        raise _Bad(N_("contains a NUL character; remove it and try again"))
    return value


def _address(value: object, *, required: bool) -> str | None:
    raw = _text(value).strip()
    if not raw:
        if required:
            raise _Bad(N_("required"))
        return None
    try:
        address = normalise(raw)
        ascii_local = for_sending(address).isascii()
    except InvalidAddress as exc:
        raise _Bad(N_("not a valid email address")) from exc
    if not ascii_local:
        # Every message would then need SMTPUTF8 from the relay.
        raise _Bad(N_("the part before the @ must be ASCII"))
    return address


def _multiline(value: object, *, lines: int, line_limit: int) -> str:
    kept = [
        text.one_line(line, limit=line_limit)
        for line in _text(value).replace("\r\n", "\n").split("\n")
    ]
    kept = [line for line in kept if line]
    if len(kept) > lines:
        raise _Bad(N_("too many lines"))
    return "\n".join(kept)


def _postal_address(value: object) -> str:
    return _multiline(value, lines=POSTAL_LINES_MAX, line_limit=POSTAL_LINE_MAX)


def _description(value: object) -> str:
    cleaned = _text(value).replace("\r\n", "\n").strip()
    if len(cleaned) > DESCRIPTION_MAX:
        raise _Bad(N_("too long: at most 2000 characters"))
    return cleaned


def _weekday(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    name = _text(value).strip().lower()
    if name in WEEKDAYS:
        return WEEKDAYS.index(name)
    raise _Bad(N_("choose a day of the week"))


def _send_time(value: object) -> time:
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    match = _TIME.fullmatch(_text(value).strip())
    if match is None:
        raise _Bad(N_("give a time as HH:MM, 00:00 to 23:59"))
    return time(int(match[1]), int(match[2]))


def _timezone(value: object) -> str:
    name = _text(value).strip()
    if len(name) > TIMEZONE_MAX or name not in time_zones():
        raise _Bad(N_("not a known time zone (e.g. Europe/Paris)"))
    return name


def _tracking(value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _Bad(N_("on or off"))


def _website(value: object) -> str | None:
    raw = _text(value).strip()
    if not raw:
        return None
    parts = urlsplit(raw) if len(raw) <= URL_MAX else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or not raw.isprintable()
        or " " in raw
    ):
        raise _Bad(N_("give a web address starting with https:// (at most 500 characters)"))
    return raw


def _language(value: object) -> str:
    language = _text(value).strip().lower()
    if language not in LANGUAGES:
        raise _Bad(N_("fr or en"))
    return language


def _clean(field: str, value: object) -> object:
    """The stored form of one field's value, or _Bad."""
    if field == "name":
        name = text.newsletter_name(_text(value))
        if not name:
            raise _Bad(N_("required"))
        return name
    if field == "sender_name":
        return text.sender_name(_text(value))
    cleaners = {
        "description": _description,
        "sender_email": lambda v: _address(v, required=True),
        "reply_to": lambda v: _address(v, required=False),
        "postal_address": _postal_address,
        "language": _language,
        "timezone": _timezone,
        "send_weekday": _weekday,
        "send_time": _send_time,
        "tracking": _tracking,
        "website_url": _website,
    }
    cleaner = cleaners.get(field)
    if cleaner is None:
        raise _Bad(N_("unknown setting"))
    return cleaner(value)


def _shown(field: str, value: object) -> object:
    if field == "send_weekday" and isinstance(value, int):
        return WEEKDAYS[value]
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return value


def update_settings(
    session: Session, newsletter: Newsletter, changes: Mapping[str, object], who: audit.Who
) -> dict[str, str]:
    """Change a newsletter's settings; returns the problems by field (nothing saved if any).

    Every value passes the shared rules (service.text, service.addresses, a known time
    zone, bounded lengths); the reasons are English, marked for the doors to translate.
    One audit row `newsletter.settings` records each changed field, before and after.
    """
    problems: dict[str, str] = {}
    cleaned: dict[str, object] = {}
    for field, value in changes.items():
        if field not in SETTINGS_FIELDS:
            problems[str(field)[:40]] = N_("unknown setting")
            continue
        try:
            cleaned[field] = _clean(field, value)
        except (_Bad, text.UnusableText) as exc:
            problems[field] = (
                str(exc)
                if isinstance(exc, _Bad)
                else N_("contains a NUL character; remove it and try again")
            )
    if problems:
        return problems
    if "sender_name" in cleaned and not cleaned["sender_name"]:
        cleaned["sender_name"] = cleaned.get("name", newsletter.name)
    changed: dict[str, list[object]] = {}
    for field, value in cleaned.items():
        before = getattr(newsletter, field)
        if before != value:
            changed[field] = [_shown(field, before), _shown(field, value)]
            setattr(newsletter, field, value)
    if changed:
        session.flush()
        audit.record(
            session,
            who,
            "newsletter.settings",
            object_type="newsletter",
            object_id=newsletter.id,
            detail={"slug": newsletter.slug, "changes": changed},
        )
    return {}
