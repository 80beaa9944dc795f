"""Turn a newsletter draft pasted as plain text into the edition JSON.

Pure functions: no database, no Flask. The parser never raises on bad input and
never drops text: whatever it cannot place comes back as a ``DraftProblem`` with
its 1-based line number, so the editor sees it next to the parsed edition.

Markdown conventions of the result: the synthesis title is ``# ``, synthesis
sub-headings ``## ``, item sub-headings ``### ``; bullets become ``- `` lists.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = ["DraftProblem", "ParsedDraft", "parse_draft"]

LANGUAGES = ("fr", "en")
PREHEADER_MAX = 140


@dataclass(frozen=True)
class DraftProblem:
    """A line of the draft the parser could not place, and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class ParsedDraft:
    """The edition JSON read from a draft, with everything left unplaced."""

    edition: dict[str, Any]
    problems: list[DraftProblem]


@dataclass(frozen=True)
class _Line:
    number: int
    text: str


# Month names are looked up after _fold(), so accents are optional.
_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    [
        "janvier janv january jan",
        "fevrier fevr fev february feb",
        "mars march mar",
        "avril avr april apr",
        "mai may",
        "juin june jun",
        "juillet juil july jul",
        "aout august aug",
        "septembre sept september sep",
        "octobre oct october",
        "novembre nov november",
        "decembre dec december",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number

_FR_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_WEEKDAYS = (
    "lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|"
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
)
_DAY_FIRST = re.compile(
    rf"^(?:(?:le|on|publie le|published(?: on)?)\s+)?(?:(?:{_WEEKDAYS})\s*,?\s+)?"
    r"(?P<d>\d{1,2})(?:er|re|st|nd|rd|th)?\s+(?P<m>[a-z]+)\.?(?:\s+(?P<y>\d{4}))?\s*[.,]?$"
)
_MONTH_FIRST = re.compile(
    rf"^(?:(?:on|published(?: on)?)\s+)?(?:(?:{_WEEKDAYS})\s*,?\s+)?"
    r"(?P<m>[a-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s*,?\s*(?P<y>\d{4}))?\s*\.?$"
)
_ISO = re.compile(r"^(?:le\s+)?(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$")
_NUMERIC = re.compile(r"^(?:le\s+)?(?P<d>\d{1,2})[/.](?P<m>\d{1,2})[/.](?P<y>\d{4})$")

_WEEK = re.compile(r"^(?:semaine|week)(?:\s+(?:du|of|from))?\s+(?P<rest>.+)$")
_WEEK_SPLIT = re.compile(r"\s*(?:\bau\b|\bto\b|\bjusqu'au\b|[-\u2013\u2014])\s*")

_CREDIT = re.compile(
    r"^(?:(?:illustrations?|images?|photos?|photographies?|dessins?|visuels?)\s*"
    r"(?:par|de|by|from|:|\u00a9)|credits?\b|\u00a9|illustrated by)"
)
_SYNTHESIS = {"synthese", "synthesis", "editorial", "edito"}
_NEWS = {"nouvelles", "nouvelles de la semaine", "actualites", "news", "this week's news"}
_RELATED = {
    "a lire egalement",
    "a lire aussi",
    "lire egalement",
    "a voir egalement",
    "related reads",
    "further reading",
    "read also",
    "see also",
}
_FEEDBACK = re.compile(r"^(?:avez-vous|vous avez|did you|do you)\s+(?:apprecie|aime|enjoy|like)")
_FEEDBACK_ANSWERS = {
    "oui", "non", "yes", "no", "bof", "pas", "vraiment", "un", "peu", "beaucoup",
    "moyen", "moyennement", "not", "really", "a", "bit", "lot",
}  # fmt: skip

_READ_MORE = re.compile(
    r"^[*_]*(?:lire\s+plus|en\s+savoir\s+plus|read\s+more)\b\s*[?:!.\uff1f]*[*_]*\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_SOURCE = re.compile(r"^sources?\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\(\s*<?(?P<url>[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_URL = re.compile(r"https?://[^\s<>()\[\]]+")
_LEAD_IN = re.compile(
    r"^(?:l'|la |le |les |un |une |the |an? )?"
    r"(?:article|interview|entretien|enquete|dossier|tribune|analyse|video|podcast|"
    r"rapport|report|story|piece)\b",
)
_CONNECTOR = re.compile(r"\s(?:dans|sur|chez|du|de la|de l'|des|de|in|on|from|at|by)\s+")

_BULLET = re.compile(r"^[-*\u2022\u2013\u2014\u25e6\u25aa\u25cf\u00b7]\s+(?P<rest>.+)$")
_ORDERED = re.compile(r"^\d{1,2}[.)]\s+\S")
_TERMINAL = ".!?:;,\u2026"
_CLOSERS = "\"')]\u00bb\u201d\u2019*_ \u00a0\u202f"
_KINDS = {
    "article", "video", "podcast", "interview", "entretien", "conference", "livre", "book",
    "rapport", "report", "etude", "study", "billet", "chronique", "tribune", "emission",
    "documentaire", "documentary", "serie", "newsletter", "blog", "webinaire", "webinar",
}  # fmt: skip
_RELATED_SPLIT = re.compile(r"\s+[-\u2013\u2014|\u00b7\u2022]\s+|\t+")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def parse_draft(text: str, *, language: str = "fr") -> ParsedDraft:
    """Parse a pasted draft into the edition JSON plus the lines it could not place."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    return _Parser(_split_lines(text), language).run()


def _split_lines(text: str) -> list[_Line]:
    text = unicodedata.normalize("NFC", text)
    # str.splitlines() also breaks on form feeds and U+2028; editors number lines on \n only.
    raw = re.split(r"\r\n|\r|\n", text)
    return [_Line(n, line.translate(_ZERO_WIDTH).strip()) for n, line in enumerate(raw, 1)]


def _fold(text: str) -> str:
    """Lower-case, accent-free, straight-quoted, single-spaced form used for matching."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def _clean(text: str) -> str:
    """Single-spaced text without heading hashes or wrapping emphasis."""
    text = " ".join(text.split()).lstrip("#").strip()
    for marker in ("**", "__", "*", "_"):
        if len(text) > 2 * len(marker) and text.startswith(marker) and text.endswith(marker):
            text = text[len(marker) : -len(marker)].strip()
    return text


def _unlink(text: str) -> str:
    return _LINK.sub(lambda m: m.group("text"), text)


def _heading_key(text: str) -> str:
    return _fold(_clean(text)).strip(" :.?!*#")


def _section_of(text: str) -> str | None:
    key = _heading_key(text)
    if key in _SYNTHESIS:
        return "synthesis"
    if key in _NEWS:
        return "news"
    if key in _RELATED:
        return "related"
    if _FEEDBACK.match(key):
        return "feedback"
    return None


def _is_credit(text: str) -> bool:
    return len(text) <= 160 and bool(_CREDIT.match(_fold(text)))


def _is_read_more(text: str) -> bool:
    return bool(_READ_MORE.match(text) or _SOURCE.match(text))


def _is_link_only(text: str) -> bool:
    return bool(_LINK.fullmatch(text.rstrip(" .")) or _URL.fullmatch(text))


def _is_short_label(text: str) -> bool:
    """A title or authors line: short, not a list item, not a sentence ending in a period."""
    body = _clean(text)
    return 0 < len(body) <= 120 and not _BULLET.match(body) and not body.endswith((".", ":", ";"))


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _TERMINAL


def _is_heading(text: str) -> bool:
    """Short line without closing punctuation: how a word processor's headings paste."""
    body = _clean(text)
    if not body or _BULLET.match(body) or not any(c.isalpha() for c in body):
        return False
    if len(body) > 110 or len(body.split()) > 16 or body[0].islower():
        return False
    stripped = body.rstrip(_CLOSERS)
    # A heading may be a question ("Critique ou stratégie ?"); a long question is a paragraph.
    if stripped.endswith("?"):
        return len(body) <= 90
    return not _ends_sentence(body)


def _continues(previous: str, following: str) -> bool:
    """Whether `following` is the rest of a paragraph the paste broke in two."""
    if not following[:1].islower():
        return False
    if previous.endswith("-") and not previous.endswith(" -"):
        return True
    return not _ends_sentence(previous)


@dataclass(frozen=True)
class _DateShape:
    day: int
    month: int | None  # None: the month word is not a month name
    year: int | None


def _date_shape(text: str) -> _DateShape | None:
    """Read a line that is only a date; None when the line is not date-shaped."""
    key = _fold(text).strip()
    for pattern in (_ISO, _NUMERIC):
        if match := pattern.match(key):
            return _DateShape(int(match["d"]), int(match["m"]), int(match["y"]))
    if match := _DAY_FIRST.match(key):
        month = _MONTHS.get(match["m"])
        year = int(match["y"]) if match["y"] else None
        # "Le 3 robots" is prose; "Le 12 foobar 2025" is a date with a typo.
        if month is None and year is None:
            return None
        return _DateShape(int(match["d"]), month, year)
    if (match := _MONTH_FIRST.match(key)) and match["m"] in _MONTHS:
        year = int(match["y"]) if match["y"] else None
        return _DateShape(int(match["d"]), _MONTHS[match["m"]], year)
    return None


def _partial_date(text: str) -> tuple[int | None, int | None, int | None] | None:
    day = month = year = None
    for token in re.findall(r"[a-z]+|\d+", _fold(text)):
        if token.isdigit():
            if len(token) == 4 and year is None:
                year = int(token)
            elif len(token) <= 2 and day is None:
                day = int(token)
            else:
                return None
        elif token in _MONTHS and month is None:
            month = _MONTHS[token]
        elif token not in {"er", "re", "st", "nd", "rd", "th", "le", "the", "of"}:
            return None
    return day, month, year


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _parse_week(text: str) -> tuple[date, date] | None:
    match = _WEEK.match(_fold(text))
    if not match:
        return None
    parts = _WEEK_SPLIT.split(match["rest"].strip(" ."))
    if len(parts) != 2:
        return None
    start, end = _partial_date(parts[0]), _partial_date(parts[1])
    if start is None or end is None:
        return None
    start_day, start_month, start_year = start
    end_day, end_month, end_year = end
    end_month = end_month or start_month
    end_year = end_year or start_year
    if start_day is None or end_day is None or end_month is None or end_year is None:
        return None
    start_month = start_month or end_month
    if start_year is None:
        start_year = end_year if start_month <= end_month else end_year - 1
    first = _make_date(start_year, start_month, start_day)
    last = _make_date(end_year, end_month, end_day)
    if first is None or last is None or first > last:
        return None
    return first, last


def _week_label(start: date, end: date, language: str) -> str:
    if language == "en":
        months = _EN_MONTHS
        if (start.year, start.month) == (end.year, end.month):
            return f"Week of {start.day}\u2013{end.day} {months[end.month - 1]} {end.year}"
        first = f"{start.day} {months[start.month - 1]}"
        if start.year != end.year:
            first += f" {start.year}"
        return f"Week of {first} \u2013 {end.day} {months[end.month - 1]} {end.year}"

    def day(value: date) -> str:
        return "1er" if value.day == 1 else str(value.day)

    months = _FR_MONTHS
    last = f"{day(end)} {months[end.month - 1]} {end.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"Semaine du {day(start)} au {last}"
    first = f"{day(start)} {months[start.month - 1]}"
    if start.year != end.year:
        first += f" {start.year}"
    return f"Semaine du {first} au {last}"


def _first_sentence(paragraph: str) -> str:
    text = " ".join(_unlink(paragraph).replace("**", "").replace("__", "").split())
    text = re.sub(r"(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)", "", text)
    match = re.match(r"(.+?[.!?\u2026])(?=\s+[\"\u00ab\u201c(]?[A-Z\u00c0-\u00de]|\s*$)", text)
    sentence = match.group(1) if match else text
    if len(sentence) <= PREHEADER_MAX:
        return sentence
    cut = sentence[: PREHEADER_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "\u2026"


def _source_of(rest: str) -> tuple[str | None, str | None]:
    """Source name and URL from what follows "Lire plus ?"; a "#" URL means none yet."""
    links = list(_LINK.finditer(rest))
    if links:
        link = links[-1]
        url = link["url"].strip()
        return _clean(link["text"]) or None, None if not url or url.startswith("#") else url
    name_part = rest
    url_match = _URL.search(rest)
    url = url_match.group(0).rstrip(".,;:") if url_match else None
    if url_match:
        name_part = (rest[: url_match.start()] + rest[url_match.end() :]).strip(" :\u2014-")
    name = _clean(name_part).rstrip(" .")
    if _LEAD_IN.match(_fold(name)):
        pieces = _CONNECTOR.split(name.replace("\u2019", "'"))
        if len(pieces) > 1:
            name = pieces[-1].strip()
    if not name and url:
        name = re.sub(r"^https?://(?:www\.)?", "", url).split("/")[0]
    return name or None, url


def _render(lines: list[_Line], heading: str) -> tuple[str, list[tuple[str, str]]]:
    """Markdown for body lines, and its (kind, text) blocks."""
    merged: list[list[Any]] = []
    for line in lines:
        if merged and _continues(merged[-1][1], line.text):
            previous = merged[-1][1]
            joiner = "" if previous.endswith("-") else " "
            merged[-1][1] = previous + joiner + line.text
        else:
            merged.append([line.number, line.text])
    blocks: list[tuple[str, str]] = []
    for _, text in merged:
        if bullet := _BULLET.match(text):
            blocks.append(("li", "- " + bullet["rest"]))
        elif _is_heading(text):
            blocks.append(("h", heading + _clean(text)))
        elif _ORDERED.match(text):
            blocks.append(("ol", text))
        else:
            blocks.append(("p", text))
    out: list[str] = []
    for index, (kind, text) in enumerate(blocks):
        if index:
            # Consecutive list items stay one tight list even when the paste spaced them.
            tight = kind in ("li", "ol") and blocks[index - 1][0] == kind
            out.append("\n" if tight else "\n\n")
        out.append(text)
    return "".join(out), blocks


class _Parser:
    def __init__(self, lines: list[_Line], language: str) -> None:
        self.lines = lines
        self.language = language
        self.problems: list[DraftProblem] = []
        self.week: tuple[date, date] | None = None

    def problem(self, line: _Line, reason: str) -> None:
        self.problems.append(DraftProblem(line.number, line.text, reason))

    def run(self) -> ParsedDraft:
        sections: dict[str, list[_Line]] = {"header": []}
        current = "header"
        for line in self.lines:
            if not line.text:
                continue
            kind = _section_of(line.text)
            if kind is not None:
                current = kind
                sections.setdefault(kind, [])
                continue
            sections.setdefault(current, []).append(line)

        edition: dict[str, Any] = {
            "title": "",
            "week_start": None,
            "week_end": None,
            "authors": [],
            "subject": "",
            "preheader": "",
            "image": None,
            "synthesis": "",
            "items": [],
            "related": [],
        }
        week_line = self.parse_header(sections["header"], edition)
        if not sections["header"]:
            first = next((line for line in self.lines if line.text), _Line(1, ""))
            self.problem(_Line(first.number, ""), "no title or week line before this point")
        if "synthesis" in sections:
            self.parse_synthesis(sections["synthesis"], edition)
        if "news" in sections:
            edition["items"] = self.parse_news(sections["news"])
        if "related" in sections:
            edition["related"] = self.parse_related(sections["related"])
        if "feedback" in sections:
            self.check_feedback(sections["feedback"])

        if self.week is not None:
            label = _week_label(*self.week, self.language)
        else:
            label = " ".join(week_line.split()) if week_line else ""
        edition["subject"] = " \u2014 ".join(part for part in (edition["title"], label) if part)
        self.problems.sort(key=lambda problem: problem.line)
        return ParsedDraft(edition=edition, problems=self.problems)

    def parse_header(self, lines: list[_Line], edition: dict[str, Any]) -> str | None:
        credits = [line for line in lines if _is_credit(line.text)]
        if credits:
            edition["image"] = {"url": None, "alt": "", "credit": _clean(credits[0].text)}
            for extra in credits[1:]:
                self.problem(extra, "second illustration credit; only the first one is used")
        rest = [line for line in lines if not _is_credit(line.text)]
        week_index = next((i for i, line in enumerate(rest) if _WEEK.match(_fold(line.text))), None)
        if week_index is None:
            # Without the week line nothing tells the authors line from stray text.
            before, after, week_line = rest[:1], [], None
            for line in rest[1:]:
                self.problem(line, "unrecognised header line (no week line to anchor it)")
            if rest:
                self.problem(rest[0], "no week line ('Semaine du \u2026') follows the title")
        else:
            before, after = rest[:week_index], rest[week_index + 1 :]
            week_line = rest[week_index]
            self.week = _parse_week(week_line.text)
            if self.week is None:
                self.problem(week_line, "could not read the week dates")
            else:
                edition["week_start"] = self.week[0].isoformat()
                edition["week_end"] = self.week[1].isoformat()
        if before and _is_short_label(before[-1].text):
            edition["title"] = _clean(before[-1].text)
            before = before[:-1]
        elif week_line is not None:
            self.problem(week_line, "no title line before the week line")
        for line in before:
            self.problem(line, "text before the title that is not an illustration credit")
        if after and _is_short_label(after[0].text.removesuffix(".")):
            edition["authors"] = _authors(after[0].text)
            after = after[1:]
        for line in after:
            self.problem(line, "unrecognised header line (expected authors, then SYNTHÈSE)")
        return week_line.text if week_line else None

    def parse_synthesis(self, lines: list[_Line], edition: dict[str, Any]) -> None:
        title = ""
        if lines and _is_heading(lines[0].text):
            title, lines = _clean(lines[0].text), lines[1:]
        body, blocks = _render(lines, "## ")
        edition["synthesis"] = "\n\n".join(
            part for part in (f"# {title}" if title else "", body) if part
        )
        paragraph = next((text for kind, text in blocks if kind == "p"), "")
        edition["preheader"] = _first_sentence(paragraph) if paragraph else ""

    def resolve_date(self, line: _Line, shape: _DateShape) -> str | None:
        if shape.month is None:
            self.problem(line, "unknown month name in date line")
            return None
        year = shape.year
        if year is None:
            if self.week is None:
                self.problem(line, "date has no year and the week line could not be read")
                return None
            start, end = self.week
            # A December item in a week ending in January belongs to the earlier year.
            year = start.year if shape.month > end.month else end.year
        parsed = _make_date(year, shape.month, shape.day)
        if parsed is None:
            self.problem(line, "date line does not name a real day")
            return None
        return parsed.isoformat()

    def parse_news(self, lines: list[_Line]) -> list[dict[str, Any]]:
        shapes = [_date_shape(line.text) for line in lines]
        read_more = [_is_read_more(line.text) for line in lines]
        dates = [
            i
            for i, shape in enumerate(shapes)
            if shape is not None and not (i > 0 and (shapes[i - 1] or read_more[i - 1]))
        ]
        # Dates right after another date or a "Lire plus" were excluded above, so the line
        # before a date is always free to be that item's title.
        starts = [index - 1 if index > 0 else index for index in dates]

        items: list[dict[str, Any]] = []
        self.orphans(lines[: starts[0]] if starts else lines, items)
        for number, (start, date_index) in enumerate(zip(starts, dates, strict=True)):
            end = starts[number + 1] if number + 1 < len(starts) else len(lines)
            title_line = lines[start] if start < date_index else None
            date_line = lines[date_index]
            if title_line is None:
                self.problem(date_line, "news item has no title line before its date")
            shape = shapes[date_index]
            assert shape is not None
            iso = self.resolve_date(date_line, shape)
            body_end = next((i for i in range(date_index + 1, end) if read_more[i]), end)
            body, tail = lines[date_index + 1 : body_end], lines[body_end:end]
            self.add_item(items, title_line, iso, body, tail)
        return items

    def add_item(
        self,
        items: list[dict[str, Any]],
        title: _Line | None,
        iso: str | None,
        body: list[_Line],
        tail: list[_Line],
    ) -> None:
        """Append one news item; `tail` is its 'Lire plus' line and whatever follows it."""
        image = None
        if body and _is_credit(body[0].text):
            image = {"url": None, "alt": "", "credit": _clean(body[0].text)}
            body = body[1:]
        source_name = source_url = None
        leftover: list[_Line] = []
        if tail:
            match = _READ_MORE.match(tail[0].text) or _SOURCE.match(tail[0].text)
            assert match is not None
            rest, leftover = match["rest"], tail[1:]
            # "Lire plus ?" alone, its link pasted on the next line.
            if not rest and leftover and _is_link_only(leftover[0].text):
                rest, leftover = leftover[0].text, leftover[1:]
            source_name, source_url = _source_of(rest)
            if source_name is None and source_url is None:
                self.problem(tail[0], "'Lire plus' line names no source")
        items.append(
            {
                "date": iso,
                "title": _clean(title.text) if title else "",
                "body": _render(body, "### ")[0],
                "source_name": source_name,
                "source_url": source_url,
                "image": image,
            }
        )
        self.orphans(leftover, items)

    def orphans(self, lines: list[_Line], items: list[dict[str, Any]]) -> None:
        """Lines between news items: an undated item if they end in 'Lire plus', else problems."""
        chunk: list[_Line] = []
        for line in lines:
            chunk.append(line)
            if not _is_read_more(line.text):
                continue
            if len(chunk) == 1:
                self.problem(line, "'Lire plus' line outside any news item")
            else:
                self.problem(chunk[0], "news item has no date line ('Le <day> <month> <year>')")
                self.add_item(items, chunk[0], None, chunk[1:-1], chunk[-1:])
            chunk = []
        for line in chunk:
            self.problem(line, "text outside any news item")

    def parse_related(self, lines: list[_Line]) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        current_line: _Line | None = None

        def flush() -> None:
            if current_line is None:
                return
            if current.get("title"):
                entries.append(
                    {
                        "title": current["title"],
                        "date": current.get("date"),
                        "kind": current.get("kind"),
                        "url": current.get("url"),
                    }
                )
            else:
                self.problem(current_line, "related read without a title")

        for line in lines:
            fields = self.related_fields(line)
            clash = any(key in current for key in fields)
            if current_line is not None and ("title" in fields or clash):
                flush()
                current, current_line = {}, None
            current.update(fields)
            current_line = current_line or line
        flush()
        return entries

    def related_fields(self, line: _Line) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        text = line.text
        if bullet := _BULLET.match(text):
            text = bullet["rest"]
        link = _LINK.search(text)
        if link:
            fields["title"] = _clean(link["text"])
            url = link["url"].strip()
            if url and not url.startswith("#"):
                fields["url"] = url
            text = text[: link.start()] + text[link.end() :]
        for part in _RELATED_SPLIT.split(text):
            part = part.strip(" ,;")
            if not part:
                continue
            if _URL.fullmatch(part.strip("<>")):
                fields["url"] = part.strip("<>")
            elif (shape := _date_shape(part)) is not None:
                fields["date"] = self.resolve_date(line, shape)
            elif _fold(part).strip(" .") in _KINDS:
                fields["kind"] = _clean(part).rstrip(".")
            elif "title" in fields:
                fields["title"] += " \u2014 " + _clean(part)
            else:
                fields["title"] = _clean(part)
        return fields

    def check_feedback(self, lines: list[_Line]) -> None:
        for line in lines:
            words = [w for w in re.split(r"[\s/|,\u00b7\u2022-]+", _fold(line.text)) if w]
            answers = all(w in _FEEDBACK_ANSWERS or not any(c.isalnum() for c in w) for w in words)
            if not answers:
                self.problem(line, "text after the feedback prompt")


def _authors(text: str) -> list[str]:
    text = _unlink(text).replace("**", "").replace("__", "")
    text = re.sub(r"^(?:par|by)\s+", "", text.strip(), flags=re.IGNORECASE)
    parts = re.split(r"\s*(?:&|,|;|\+|\bet\b(?!\s+al\b)|\band\b)\s*", text, flags=re.IGNORECASE)
    return [_clean(part) for part in parts if _clean(part)]
