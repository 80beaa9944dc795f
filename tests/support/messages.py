"""The messages of the code and templates, found as `make messages-extract` finds them.

Reads babel.cfg (the same mapping `pybabel extract -F babel.cfg` uses) and runs
Babel's extractors over the matched files. Unlike `pybabel`, it also reports the
calls whose message is not a literal, which extraction would skip silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir, extract_python
from babel.messages.frontend import parse_mapping_cfg
from jinja2.ext import babel_extract

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "babel.cfg"

Msgid = str | tuple[str, str]
# What an extractor yields: (line, function name, its message or messages, comments).
Call = tuple[int, str, str | tuple[str | None, ...] | None, list[str]]


@dataclass(frozen=True)
class Found:
    """One message where the code or a template asks for it."""

    path: str  # relative to the repository
    line: int
    msgid: Msgid  # a counted message is (singular, plural)
    context: str | None
    comments: tuple[str, ...]


def extract() -> list[Found]:
    """Every translatable message of the files babel.cfg maps, with where it is."""
    found: list[Found] = []
    for path, line, message, comments, context in extract_from_dir(
        str(ROOT), *_mapping(), comment_tags=("Translators:",), strip_comment_tags=True
    ):
        msgid: Msgid = (message[0], message[1]) if isinstance(message, tuple) else message
        found.append(Found(path, line, msgid, context, tuple(comments)))
    return found


def _mapping() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    with MAPPING.open(encoding="utf-8") as handle:
        # Babel leaves parse_mapping_cfg unannotated.
        mapping: tuple[list[tuple[str, str]], dict[str, dict[str, str]]] = parse_mapping_cfg(  # type: ignore[no-untyped-call]
            handle, filename=str(MAPPING)
        )
    return mapping


def scanned() -> list[tuple[str, str, dict[str, str]]]:
    """(path, method, options) of every file babel.cfg maps, messages or not."""
    files: list[tuple[str, str, dict[str, str]]] = []

    def collect(path: str, method: str, options: dict[str, str]) -> None:
        files.append((path, method, options))

    # Walk the files as pybabel does (its own pattern matching); the extraction itself is unused.
    for _ in extract_from_dir(str(ROOT), *_mapping(), callback=collect):
        pass
    return files


def non_literal_calls(skip: frozenset[str] = frozenset()) -> list[str]:
    """Calls of a gettext keyword whose message is built at run time ("path:line name()").

    Extraction skips them silently, so their text could never be translated.
    `skip` names the files (relative paths) that implement the functions themselves.
    """
    problems: list[str] = []
    for path, method, options in scanned():
        if path in skip:
            continue
        with (ROOT / path).open("rb") as handle:
            calls = _calls(handle, method, options)
        for line, name, messages, _comments in calls:
            args = messages if isinstance(messages, tuple) else (messages,)
            spec = DEFAULT_KEYWORDS[name] or (1,)
            assert isinstance(spec, tuple)  # Babel's defaults give argument positions, no dict
            needed = [i[0] if isinstance(i, tuple) else i for i in spec]
            if any(n > len(args) or not isinstance(args[n - 1], str) for n in needed):
                problems.append(f"{path}:{line} {name}()")
    return problems


def _calls(handle: BinaryIO, method: str, options: dict[str, str]) -> list[Call]:
    keywords = list(DEFAULT_KEYWORDS)
    if method != "python":
        return list(babel_extract(handle, keywords, [], options))
    # Babel's hints for extract_python are off: it takes any collection of names (its
    # docstring: "a list of keywords") and a plain options dict, and yields
    # (line, funcname, message(s), comments) as Jinja's babel_extract does.
    calls = extract_python(handle, keywords, [], options)  # type: ignore[arg-type]
    return list(calls)  # type: ignore[arg-type]
