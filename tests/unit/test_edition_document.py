"""The edition document: any JSON value is either a valid edition or a refusal naming a field.

Property-based (hypothesis) for the "never another exception" promise, with examples for
the wording each field's refusal takes. No database: apply_data runs on an unsaved Edition.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.editions import store
from service.editions.drafts import parse_draft
from service.editions.schema import EditionInvalid, validate
from service.models import Edition, EditionStatus

SAMPLE = Path(__file__).resolve().parents[2] / "service" / "sample"
# "items[2].title", "related[0].url", "image.url", "week_end", or "" for the document.
WHERE = re.compile(r"^(?:[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*(?:\[\d+\])?)?$")
PROPERTY = settings(max_examples=300, deadline=None, database=None)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
FIELDS = ["title", "week_start", "week_end", "authors", "subject", "preheader", "image"]
FIELDS += ["synthesis", "items", "related"]
ITEM_FIELDS = ["date", "title", "body", "source_name", "source_url", "image"]
RELATED_FIELDS = ["title", "url", "date", "kind"]
texts = st.text(max_size=40) | st.sampled_from(["", " ", "2025-01-20", "https://a.example/x"])
values = json_values | texts | st.sampled_from(["javascript:alert(1)", "2025-02-30", "a\x00b"])


def _objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    # Mostly the real keys, so the checks behind the type checks are reached too.
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), values, max_size=8)


documents = st.fixed_dictionaries(
    {},
    optional={
        "title": texts | values,
        "week_start": values,
        "week_end": values,
        "authors": st.lists(texts | values, max_size=3) | values,
        "subject": texts | values,
        "image": _objects(["url", "alt", "credit"]) | values,
        "synthesis": texts | values,
        "items": st.lists(_objects(ITEM_FIELDS) | values, max_size=4) | values,
        "related": st.lists(_objects(RELATED_FIELDS) | values, max_size=3) | values,
    },
)


def _draft() -> Edition:
    return Edition(number=1, status=EditionStatus.DRAFT)


def _outcome(data: object) -> Edition | EditionInvalid:
    # Any other exception escapes and fails the test.
    edition = _draft()
    try:
        store.apply_data(edition, data)
    except EditionInvalid as refused:
        return refused
    return edition


def _refusal(data: object) -> list[tuple[str, str]]:
    with pytest.raises(EditionInvalid) as refused:
        store.apply_data(_draft(), data)
    return refused.value.problems


@PROPERTY
@given(json_values | documents)
def test_any_json_is_an_edition_or_a_refusal_naming_the_field(data: object) -> None:
    outcome = _outcome(data)
    if isinstance(outcome, Edition):
        assert outcome.title
        assert outcome.title == outcome.title.strip()
        assert len(outcome.items) <= 50
        return
    assert outcome.problems
    for where, reason in outcome.problems:
        assert WHERE.match(where), where
        assert where.split("[")[0].split(".")[0] in [*FIELDS, ""]
        assert reason
    first_where, first_reason = outcome.problems[0]
    assert str(outcome) == (f"{first_where}: {first_reason}" if first_where else first_reason)


@PROPERTY
@given(documents)
def test_a_valid_document_round_trips_through_the_edition(data: dict[str, Any]) -> None:
    edition = _draft()
    try:
        store.apply_data(edition, data)
    except EditionInvalid:
        return
    again = _draft()
    store.apply_data(again, store.to_data(edition))
    assert store.to_data(again) == store.to_data(edition)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"title": "T", "items": ["not an object"]}, ("items[0]", "must be an object")),
        (
            {"title": "T", "items": [{"title": "a"}, {}, {"title": " "}]},
            ("items[1].title", "required"),
        ),
        ({"title": "T", "items": [{"title": "a"}, {"body": "b"}]}, ("items[1].title", "required")),
        ({"title": "T", "items": {"title": "a"}}, ("items", "must be a list")),
        ({"items": []}, ("title", "required")),
        ({"title": 7}, ("title", "must be text")),
        ({"title": "T" * 301}, ("title", "at most 300 characters")),
        ({"title": "T", "subject": "S" * 301}, ("subject", "at most 300 characters")),
        ({"title": "T", "items": [{"title": "a"}] * 51}, ("items", "at most 50 entries")),
        ({"title": "a\x00b"}, ("title", "must not contain a NUL character")),
        (
            {"title": "T", "week_start": "2025-01-25", "week_end": "2025-01-18"},
            ("week_end", "is before week_start"),
        ),
        (
            {"title": "T", "items": [{"title": "a", "date": "2025-02-30"}]},
            ("items[0].date", "'2025-02-30' is not an ISO date (YYYY-MM-DD)"),
        ),
        (
            {"title": "T", "items": [{"title": "a", "source_url": "javascript:alert(1)"}]},
            ("items[0].source_url", "only http:// and https:// links are allowed"),
        ),
        (
            {"title": "T", "image": {"url": "data:image/png;base64,AAAA"}},
            ("image.url", "only http:// and https:// images are allowed"),
        ),
        ({"title": "T", "image": "header.png"}, ("image", "must be an object")),
        ({"title": "T", "related": [{"title": "Lire"}]}, ("related[0].url", "required")),
        (
            {"title": "T", "related": [{"url": "https://a.example"}]},
            ("related[0].title", "required"),
        ),
        (
            {"title": "T", "related": [{"title": "L", "url": "https://a.example", "date": "hier"}]},
            ("related[0].date", "'hier' is not an ISO date (YYYY-MM-DD)"),
        ),
        (
            {"title": "T", "items": [{"title": "a", "sourc_url": "x"}]},
            ("items[0]", "unknown field 'sourc_url'"),
        ),
        (["title"], ("", "the edition must be a JSON object")),
    ],
)
def test_each_refusal_names_its_field(data: object, problem: tuple[str, str]) -> None:
    assert problem in _refusal(data)


def test_every_problem_is_listed_not_only_the_first() -> None:
    problems = _refusal({"title": "", "items": [{"title": "a"}, "b", {"title": ""}]})
    assert problems == [
        ("title", "required"),
        ("items[1]", "must be an object"),
        ("items[2].title", "required"),
    ]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_demo_samples_are_valid_documents(language: str) -> None:
    data = json.loads((SAMPLE / f"edition_{language}.json").read_text("utf-8"))
    document = validate(data)
    assert document.items
    assert document.related


def test_a_pasted_draft_goes_through_the_same_rules() -> None:
    draft = "Ma lettre\n\nÀ lire également\n\nUn article sans lien\n"
    parsed = parse_draft(draft)
    assert parsed.edition["related"], parsed
    assert parsed.edition["related"][0]["url"] is None
    assert ("related[0].url", "required") in _refusal(parsed.edition)


def test_a_locked_edition_refuses_even_valid_content() -> None:
    edition = Edition(number=3, status=EditionStatus.SENT)
    with pytest.raises(store.EditionLocked):
        store.apply_data(edition, {"title": "T"})
