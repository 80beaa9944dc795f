"""The edition document: the one typed shape of an edition's content.

Every door that brings edition JSON in (`hebdo editions load`, the composer's save and
autosave, a pasted draft, the demo's sample) validates it here, through
`editions.apply_data`. A refusal is an `EditionInvalid` listing every problem as
(where, reason), where "where" is the path in the JSON: "items[2].title",
"related[0].url", or "" for the document itself.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from service import text

# Bounds follow the columns that store each field (String(300), String(200), String(1000))
# and keep one edition well inside what a mail client shows.
TITLE_MAX = 300
NAME_MAX = 200
URL_MAX = 1000
KIND_MAX = 80
MARKDOWN_MAX = 200_000
AUTHORS_MAX = 20
ITEMS_MAX = 50
RELATED_MAX = 50

_HTTP = re.compile(r"^https?://[^\s/?#]+\S*$", re.IGNORECASE)
_SAMPLE_IMAGE = re.compile(r"^sample:[a-z0-9_-]+$")


class EditionError(ValueError):
    """The edition data is not usable; the message says where."""


class EditionInvalid(EditionError):
    """The edition JSON breaks the document's rules; `problems` lists (where, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(_line(where, reason) for where, reason in problems))

    def __str__(self) -> str:
        # The first problem, "where: reason", as the composer shows it next to that field.
        where, reason = self.problems[0]
        return _line(where, reason)


def _line(where: str, reason: str) -> str:
    return f"{where}: {reason}" if where else reason


# --- field types ------------------------------------------------------------------------


def _none_is_empty(value: Any) -> Any:
    return "" if value is None else value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul", "must not contain a NUL character")
    return value


def _none_is_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _one_line(value: str) -> str:
    # The same rule as every other door's text (service.text): line breaks and control
    # characters become one space. Length is checked after, with the field named.
    return text.one_line(value, limit=2 * len(value) + 1)


def _required(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", "required")
    return value


def _optional_url(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value.strip() if isinstance(value, str) else value


def _http(value: str | None) -> str | None:
    if value is not None and not _HTTP.match(value):
        raise PydanticCustomError("scheme", "only http:// and https:// links are allowed")
    return value


def _image_url(value: str | None) -> str | None:
    if value is not None and not (_HTTP.match(value) or _SAMPLE_IMAGE.match(value)):
        raise PydanticCustomError("scheme", "only http:// and https:// images are allowed")
    return value


def _at_most(limit: int) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise PydanticCustomError(
                "text_too_long", "at most {limit} characters", {"limit": limit}
            )
        return value

    return AfterValidator(check)


def _iso_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("iso_date", "must be an ISO date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise PydanticCustomError(
            "iso_date", "{value} is not an ISO date (YYYY-MM-DD)", {"value": repr(value)[:40]}
        ) from None


Text = Annotated[str, BeforeValidator(_none_is_empty), AfterValidator(_no_nul)]
Line = Annotated[Text, AfterValidator(_one_line)]
Title = Annotated[Line, _at_most(TITLE_MAX), AfterValidator(_required)]
Markdown = Annotated[Text, _at_most(MARKDOWN_MAX)]
IsoDate = Annotated[date | None, BeforeValidator(_iso_date)]
Link = Annotated[
    str | None,
    BeforeValidator(_optional_url),
    _at_most(URL_MAX),
    AfterValidator(_http),
]


class _Part(BaseModel):
    # Unknown keys are refused: a misspelt "sourc_url" would otherwise vanish unsaid.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Part):
    """An illustration: where it is, its text alternative and its credit."""

    url: Annotated[
        str | None,
        BeforeValidator(_optional_url),
        _at_most(URL_MAX),
        AfterValidator(_image_url),
    ] = None
    alt: Annotated[Line, _at_most(TITLE_MAX)] = ""
    credit: Annotated[Line, _at_most(TITLE_MAX)] = ""

    def as_json(self) -> dict[str, Any]:
        """As stored on the edition: {url, alt, credit}."""
        return {"url": self.url, "alt": self.alt, "credit": self.credit}


def _empty_image(value: Any) -> Any:
    return None if value == {} else value


OptionalImage = Annotated[Image | None, BeforeValidator(_empty_image)]


class NewsItem(_Part):
    """One news item: its date, title, Markdown body and source."""

    date: IsoDate = None
    title: Title
    body: Markdown = ""
    source_name: Annotated[Line, _at_most(NAME_MAX)] = ""
    source_url: Link = None
    image: OptionalImage = None


class RelatedRead(_Part):
    """A related read: title and link required, date and kind optional."""

    title: Title
    url: Annotated[Link, AfterValidator(lambda url: _required(url or ""))]
    date: IsoDate = None
    kind: Annotated[Line, _at_most(KIND_MAX)] = ""

    def as_json(self) -> dict[str, Any]:
        """As stored on the edition."""
        return {
            "title": self.title,
            "date": self.date.isoformat() if self.date else None,
            "kind": self.kind,
            "url": self.url,
        }


class EditionDocument(_Part):
    """The whole edition JSON (see README), as the CLI loads and shows it."""

    title: Title
    week_start: IsoDate = None
    week_end: IsoDate = None
    authors: Annotated[
        list[Annotated[Line, _at_most(NAME_MAX)]],
        BeforeValidator(_none_is_empty_list),
        Field(max_length=AUTHORS_MAX),
    ] = []
    subject: Annotated[Line, _at_most(TITLE_MAX)] = ""
    preheader: Annotated[Line, _at_most(TITLE_MAX)] = ""
    image: OptionalImage = None
    synthesis: Markdown = ""
    items: Annotated[
        list[NewsItem],
        BeforeValidator(_none_is_empty_list),
        Field(max_length=ITEMS_MAX),
    ] = []
    related: Annotated[
        list[RelatedRead],
        BeforeValidator(_none_is_empty_list),
        Field(max_length=RELATED_MAX),
    ] = []


# --- validation ---------------------------------------------------------------------------

_REASONS = {
    "missing": "required",
    "string_type": "must be text",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "date_type": "must be an ISO date (YYYY-MM-DD)",
}


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "nullable", "union", "is-instance")) or (
            part[:1].isupper()  # a union branch named after its model, e.g. "Image"
        ):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "too_long":
        return f"at most {context.get('max_length')} entries"
    return _REASONS.get(kind, error["msg"])


def validate(data: object) -> EditionDocument:
    """The edition document read from JSON data, or EditionInvalid naming every bad field."""
    if not isinstance(data, dict):
        raise EditionInvalid([("", "the edition must be a JSON object")])
    try:
        document = EditionDocument.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            if error["type"] == "extra_forbidden":
                # The object holding an unknown key is where the problem is; the key,
                # any text at all, is only quoted (cut short) in the reason.
                problem = (_where(loc[:-1]), f"unknown field {str(loc[-1])[:40]!r}")
            else:
                problem = (_where(loc), _reason(error))
            if problem not in problems:
                problems.append(problem)
        raise EditionInvalid(problems) from None
    if document.week_start and document.week_end and document.week_end < document.week_start:
        raise EditionInvalid([("week_end", "is before week_start")])
    return document
