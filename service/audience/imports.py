"""Subscriber import from CSV: tolerant of what other tools export, strict about consent.

``import_csv`` flushes in the caller's transaction (small files, tests);
``import_csv_batched`` owns its transactions and commits once per batch, so a
100,000-row file never holds one long write lock. Both stream the file: memory
stays flat whatever its size. Nothing is mailed here: an import that leaves
readers pending queues their confirmation mail (service.audience.confirmations) in the
same transaction, and the door enqueues the workers after the last commit.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, cast

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.access import webhooks
from service.addresses import InvalidAddress, normalise
from service.audience import confirmations, subscriptions, suppressions
from service.mail.wording import LANGUAGES
from service.models import (
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)
from service.newsletters import UnknownNewsletter
from service.team import audit
from service.text import UnusableText, person_name

ImportSource = str | os.PathLike[str] | IO[bytes] | IO[str]

MAX_LISTED = 1000  # rejected (and skipped) rows kept in a report; the counts stay exact
SNIFF_BYTES = 8192
DELIMITERS = ",;\t|"
_BATCH_ATTEMPTS = 3
# What a spreadsheet would run as a formula; exports.py prefixes such cells with a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Header names, compared without case, accents, spaces or punctuation; earlier wins.
_EMAIL_HEADERS = (
    "email",
    "emailaddress",
    "courriel",
    "adressecourriel",
    "adresseemail",
    "adressemail",
    "adresseelectronique",
    "mail",
    "adresse",  # last: in French it may also be a postal address
)
_FULL_NAME_HEADERS = ("name", "fullname", "nomcomplet", "displayname", "prenomnom", "nomprenom")
_FIRST_NAME_HEADERS = ("prenom", "firstname", "givenname")
_LAST_NAME_HEADERS = ("nom", "lastname", "surname", "familyname", "nomdefamille")
_LOCALE_HEADERS = ("locale", "langue", "language", "lang")
# Other tools' spellings of the languages we send in; anything else stays an attribute.
_LANGUAGE_NAMES = {
    "francais": "fr",
    "french": "fr",
    "fra": "fr",
    "fre": "fr",
    "anglais": "en",
    "english": "en",
    "eng": "en",
}
_LANGUAGE_TAG = re.compile(r"([a-z]{2})(?:[-_][a-z0-9]{1,8})*")
# Columns of our own export that describe the old subscription, not the reader.
_EXPORT_STATE_HEADERS = ("status", "consentat", "consentsource", "confirmedat")


class ImportAborted(ValueError):
    """The file cannot be imported at all; the message says why (nothing was written)."""


@dataclass(frozen=True)
class RejectedRow:
    """A row left out because it is unusable; line is where its record starts (header = 1)."""

    line: int
    email: str
    reason: str


@dataclass(frozen=True)
class SkippedRow:
    """A valid row deliberately not subscribed: the address is suppressed or unsubscribed."""

    line: int
    email: str
    reason: str


@dataclass(frozen=True)
class ImportProgress:
    """Counts so far, handed to the progress callback after each batch."""

    rows_read: int
    added: int
    merged: int
    skipped: int
    rejected_count: int


@dataclass
class ImportReport:
    """What an import did; every data row counts once in added, merged, skipped or rejected."""

    rows_read: int = 0
    added: int = 0  # new subscribers
    merged: int = 0  # address already earlier in the file or in the database
    subscribed: int = 0  # new subscriptions to the newsletter
    confirmed: int = 0  # pending subscriptions this (confirmed) import confirmed
    skipped: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_count: int = 0
    skipped_rows: list[SkippedRow] = field(default_factory=list)
    confirmed_import: bool = False
    delimiter: str = ","
    # Confirmation mails this (unconfirmed) import queued for the workers, counted by request.
    confirmations_queued: int = 0
    confirmation_request: str = ""

    def reject(self, row: RejectedRow) -> None:
        """Count a rejected row, keeping the first MAX_LISTED for display."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(row)

    def progress(self) -> ImportProgress:
        """A snapshot of the counts."""
        return ImportProgress(
            self.rows_read, self.added, self.merged, self.skipped, self.rejected_count
        )

    def summary_lines(self) -> list[str]:
        """The report as lines of text, for the CLI and the upload page."""
        state = "confirmed" if self.confirmed_import else "pending confirmation"
        lines = [
            f"rows read: {self.rows_read}",
            f"added: {self.added} new subscribers",
            f"merged: {self.merged} (address already in the file or the database)",
            f"subscribed: {self.subscribed} new subscriptions ({state})",
        ]
        if self.confirmed:
            lines.append(f"confirmed: {self.confirmed} pending subscriptions")
        lines.append(f"skipped: {self.skipped} (suppressed/unsubscribed)")
        lines.extend(f"  line {row.line}: {row.email}: {row.reason}" for row in self.skipped_rows)
        if self.skipped > len(self.skipped_rows):
            lines.append(f"  … and {self.skipped - len(self.skipped_rows)} more not listed")
        if not self.confirmed_import:
            lines.append(f"confirmation emails queued: {self.confirmations_queued}")
        lines.append(f"rejected: {self.rejected_count}")
        lines.extend(
            f"  line {row.line}: {row.email or '(empty)'}: {row.reason}" for row in self.rejected
        )
        if self.rejected_count > len(self.rejected):
            lines.append(f"  … and {self.rejected_count - len(self.rejected)} more not listed")
        return lines


@dataclass
class _Row:
    line: int
    email: str  # normalised
    name: str
    locale: str | None
    attributes: dict[str, Any]
    opted_out: bool  # our own export says this reader had unsubscribed


@dataclass(frozen=True)
class _Consent:
    confirmed: bool
    source: str
    at: datetime


@dataclass
class _Outcome:
    added: int = 0
    merged: int = 0
    subscribed: int = 0
    confirmed: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    confirmations_queued: int = 0


def import_csv(
    session: Session,
    newsletter: Newsletter,
    source: ImportSource,
    *,
    confirmed: bool,
    confirmed_reason: str | None,
    progress: Callable[[ImportProgress], None] | None = None,
    batch_size: int = 1000,
) -> ImportReport:
    """Import subscribers from a CSV file into the caller's transaction (flushes only)."""
    consent = _consent(confirmed, confirmed_reason, "import")
    request_id = confirmations.new_request_id()
    session.flush()

    def apply(rows: list[_Row]) -> _Outcome:
        outcome = _apply_batch(session, newsletter.id, newsletter.language, rows, consent)
        _queue_confirmations(session, newsletter.id, rows, consent, request_id, outcome)
        session.flush()
        return outcome

    report = _run(source, apply, consent, progress, batch_size)
    report.confirmation_request = request_id
    # Bulk statements bypass the identity map: objects loaded earlier re-read the rows.
    session.expire_all()
    return report


def import_csv_batched(
    factory: sessionmaker[Session],
    newsletter_id: int,
    source: ImportSource,
    *,
    confirmed: bool,
    confirmed_reason: str | None,
    progress: Callable[[ImportProgress], None] | None = None,
    batch_size: int = 1000,
    who: audit.Who | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file, committing each batch in its own transaction;
    the audit log gets one row with the counts at the end, when `who` is given."""
    consent = _consent(confirmed, confirmed_reason, "import")
    with factory() as session:
        newsletter = session.get(Newsletter, newsletter_id)
        if newsletter is None:
            raise UnknownNewsletter(f"no newsletter with id {newsletter_id}")
        language = newsletter.language

    request_id = confirmations.new_request_id()

    def apply(rows: list[_Row]) -> _Outcome:
        for attempt in range(1, _BATCH_ATTEMPTS + 1):
            try:
                with factory() as session, session.begin():
                    outcome = _apply_batch(session, newsletter_id, language, rows, consent)
                    _queue_confirmations(session, newsletter_id, rows, consent, request_id, outcome)
                    return outcome
            except IntegrityError:
                # A signup (or another import) took one of these addresses between our
                # SELECT and INSERT; the retry sees it as existing.
                if attempt == _BATCH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    report = _run(source, apply, consent, progress, batch_size)
    report.confirmation_request = request_id
    if who is not None:
        with factory() as session, session.begin():
            audit.record(
                session,
                who,
                "subscribers.import",
                object_type="newsletter",
                object_id=newsletter_id,
                detail={
                    "rows_read": report.rows_read,
                    "added": report.added,
                    "merged": report.merged,
                    "skipped": report.skipped,
                    "rejected": report.rejected_count,
                    "confirmed": confirmed,
                    "reason": confirmed_reason or "",
                },
            )
    return report


def _queue_confirmations(
    session: Session,
    newsletter_id: int,
    rows: list[_Row],
    consent: _Consent,
    request_id: str,
    outcome: _Outcome,
) -> None:
    """Owe a confirmation mail to each reader of the batch left waiting for one."""
    if consent.confirmed:
        return
    outcome.confirmations_queued = confirmations.queue_for_addresses(
        session, newsletter_id, (row.email for row in rows), request_id
    )


def add_address(
    session: Session,
    newsletter: Newsletter,
    email: str,
    *,
    name: str = "",
    locale: str | None = None,
    confirmed: bool,
    confirmed_reason: str | None,
    origin: str = "added by an editor",
) -> ImportReport:
    """Subscribe one address with the import's rules (suppressions, consent); flushes only."""
    consent = _consent(confirmed, confirmed_reason, origin)
    report = ImportReport(rows_read=1, confirmed_import=confirmed)
    try:
        address = normalise(email)
        clean_name = person_name(name)
    except (InvalidAddress, UnusableText) as exc:
        report.reject(RejectedRow(0, email, str(exc)))
        return report
    row = _Row(0, address, clean_name, _parse_locale(locale or ""), {}, False)
    outcome = _apply_batch(session, newsletter.id, newsletter.language, [row], consent)
    report.confirmation_request = confirmations.new_request_id()
    _queue_confirmations(
        session, newsletter.id, [row], consent, report.confirmation_request, outcome
    )
    _absorb(report, outcome)
    session.flush()
    session.expire_all()
    return report


@dataclass(frozen=True)
class RowResult:
    """What became of one row of a list of addresses (index: its place in the list)."""

    index: int
    email: str
    status: str  # "created", "existing", "skipped" or "rejected"
    reason: str = ""
    subscriber_id: int | None = None


def add_addresses(
    session: Session,
    newsletter: Newsletter,
    people: list[tuple[str, str, str | None]],
    *,
    confirmed: bool,
    confirmed_reason: str | None,
    origin: str,
) -> tuple[ImportReport, list[RowResult]]:
    """Subscribe a list of (email, name, locale) with the import's rules; report each row.

    A bad row is rejected alone (by its index); the good ones are subscribed in one
    batch, and unconfirmed readers are owed their confirmation mail. Flushes only.
    """
    consent = _consent(confirmed, confirmed_reason, origin)
    report = ImportReport(rows_read=len(people), confirmed_import=confirmed)
    results: dict[int, RowResult] = {}
    rows: list[_Row] = []
    for index, (email, name, locale) in enumerate(people):
        try:
            address = normalise(email)
            clean_name = person_name(name)
        except (InvalidAddress, UnusableText) as exc:
            report.reject(RejectedRow(index, email[:320], str(exc)))
            results[index] = RowResult(index, email[:320], "rejected", str(exc))
            continue
        if locale is not None and _parse_locale(locale) is None:
            reason = f"unsupported language {locale[:20]!r}"
            report.reject(RejectedRow(index, address, reason))
            results[index] = RowResult(index, address, "rejected", reason)
            continue
        rows.append(_Row(index, address, clean_name, _parse_locale(locale or ""), {}, False))
    if rows:
        emails = {row.email for row in rows}
        existing = set(
            session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails)))
        )
        outcome = _apply_batch(session, newsletter.id, newsletter.language, rows, consent)
        report.confirmation_request = confirmations.new_request_id()
        _queue_confirmations(
            session, newsletter.id, rows, consent, report.confirmation_request, outcome
        )
        _absorb(report, outcome)
        session.flush()
        session.expire_all()
        found = session.execute(
            select(Subscriber.email, Subscriber.id).where(Subscriber.email.in_(emails))
        )
        ids: dict[str, int] = {row.email: row.id for row in found}
        skipped = {row.line: row.reason for row in outcome.skipped}
        for row in rows:
            if row.line in skipped:
                status, reason = "skipped", skipped[row.line]
            else:
                status, reason = ("existing" if row.email in existing else "created"), ""
            results[row.line] = RowResult(row.line, row.email, status, reason, ids.get(row.email))
    return report, [results[index] for index in sorted(results)]


def _consent(confirmed: bool, reason: str | None, origin: str) -> _Consent:
    reason = (reason or "").strip()
    if confirmed and not reason:
        raise ValueError("a confirmed import needs the reason the readers already consented")
    source = f"{origin}: {reason}" if reason else origin
    return _Consent(confirmed=confirmed, source=source[:200], at=utcnow())


def _run(
    source: ImportSource,
    apply: Callable[[list[_Row]], _Outcome],
    consent: _Consent,
    progress: Callable[[ImportProgress], None] | None,
    batch_size: int,
) -> ImportReport:
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    report = ImportReport(confirmed_import=consent.confirmed)
    with _open(source) as stream:
        parser = _CsvRows(stream)
        report.delimiter = parser.delimiter
        batch: list[_Row] = []
        last: ImportProgress | None = None
        for item in parser:
            report.rows_read += 1
            if isinstance(item, RejectedRow):
                report.reject(item)
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                _absorb(report, apply(batch))
                batch = []
                if progress is not None:
                    last = report.progress()
                    progress(last)
        if batch:
            _absorb(report, apply(batch))
    if progress is not None and report.progress() != last:
        progress(report.progress())
    return report


def _absorb(report: ImportReport, outcome: _Outcome) -> None:
    report.added += outcome.added
    report.merged += outcome.merged
    report.subscribed += outcome.subscribed
    report.confirmed += outcome.confirmed
    report.confirmations_queued += outcome.confirmations_queued
    report.skipped += len(outcome.skipped)
    room = MAX_LISTED - len(report.skipped_rows)
    report.skipped_rows.extend(outcome.skipped[: max(room, 0)])


def _open(source: ImportSource) -> AbstractContextManager[IO[bytes] | IO[str]]:
    if isinstance(source, str | os.PathLike):
        try:
            return open(source, "rb")
        except OSError as exc:
            raise ImportAborted(f"cannot read {os.fspath(source)}: {exc.strerror}") from exc
    return nullcontext(source)


# --- Reading the file -------------------------------------------------------------


class _CsvRows:
    """The data records of a CSV file, each with the physical line where it starts."""

    def __init__(self, stream: IO[bytes] | IO[str]) -> None:
        self._bad_bytes: dict[int, int] = {}  # physical line -> first byte that is not UTF-8
        lines = self._lines(stream)
        sample: list[str] = []
        size = 0
        for line in lines:
            sample.append(line)
            size += len(line)
            if size >= SNIFF_BYTES:
                break
        self.delimiter = _choose_delimiter(sample)
        self._reader = csv.reader(
            itertools.chain(sample, lines),
            delimiter=self.delimiter,
            quotechar='"',
            doublequote=True,
        )
        header = self._header()
        self._columns = _Columns(header)

    def _header(self) -> list[str]:
        try:
            for fields in self._reader:
                bad_byte = self._pop_bad_byte(self._reader.line_num)
                if bad_byte is not None:
                    # A header in another encoding means the whole file is: rejecting
                    # row after row would only hide that.
                    raise ImportAborted(
                        f"the file is not UTF-8 (byte 0x{bad_byte:02X} in the header row): "
                        "save it as CSV UTF-8"
                    )
                if any(cell.strip() for cell in fields):
                    return fields
        except csv.Error as exc:
            raise ImportAborted(f"the header row cannot be read: {exc}") from exc
        raise ImportAborted("the file is empty: a header row naming an email column is needed")

    def __iter__(self) -> Iterator[_Row | RejectedRow]:
        reader = self._reader
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._pop_bad_byte(reader.line_num)
                yield RejectedRow(
                    start, "", f"unreadable CSV: {exc}{_span(start, reader.line_num)}"
                )
                continue
            bad_byte = self._pop_bad_byte(reader.line_num)
            if not any(cell.strip() for cell in fields):
                continue
            yield self._columns.row(start, reader.line_num, fields, bad_byte)

    def _pop_bad_byte(self, end: int) -> int | None:
        # The reader never reads ahead of the record it returns, so every bad line
        # up to `end` belongs to this record.
        found = None
        for number in [n for n in self._bad_bytes if n <= end]:
            byte = self._bad_bytes.pop(number)
            found = byte if found is None else found
        return found

    def _lines(self, stream: IO[bytes] | IO[str]) -> Iterator[str]:
        first = stream.readline()
        if isinstance(first, str):
            return _text_lines(first.removeprefix("\ufeff"), cast("IO[str]", stream))
        binary = cast("IO[bytes]", stream)
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return _utf16_lines(first, binary)
        return self._utf8_lines(first.removeprefix(codecs.BOM_UTF8), binary)

    def _utf8_lines(self, first: bytes, stream: IO[bytes]) -> Iterator[str]:
        for number, raw in enumerate(itertools.chain([first] if first else [], stream), start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Decoding the whole file at once would lose the line; here only the
                # row is rejected and the import goes on.
                self._bad_bytes[number] = raw[exc.start]
                yield raw.decode("utf-8", errors="replace")


def _text_lines(first: str, stream: IO[str]) -> Iterator[str]:
    if first:
        yield first
    yield from stream


def _utf16_lines(first: bytes, stream: IO[bytes]) -> Iterator[str]:
    # Excel's "Unicode text" export; readline() cut it on a byte, not a character.
    decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    pending = ""
    chunk = first
    while chunk:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
        chunk = stream.read(65536)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _choose_delimiter(sample: list[str]) -> str:
    """The delimiter under which the header names an email column (the sniffer's guess first)."""
    candidates: list[str] = []
    with suppress(csv.Error):
        candidates.append(csv.Sniffer().sniff("".join(sample), delimiters=DELIMITERS).delimiter)
    candidates.extend(d for d in DELIMITERS if d not in candidates)
    best: tuple[int, str] | None = None
    for delimiter in candidates:
        header = _first_record(sample, delimiter)
        if header is None:
            raise ImportAborted("the file is empty: a header row naming an email column is needed")
        if _find(header, _EMAIL_HEADERS) is not None and (best is None or len(header) > best[0]):
            best = (len(header), delimiter)
    if best is None:
        raise ImportAborted(
            "no email column: the header row must name one "
            "(email, e-mail, mail, courriel or adresse)"
        )
    return best[1]


def _first_record(sample: list[str], delimiter: str) -> list[str] | None:
    try:
        for fields in csv.reader(sample, delimiter=delimiter, quotechar='"'):
            if any(cell.strip() for cell in fields):
                return fields
    except csv.Error:
        return []
    return None


def _header_key(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(char for char in decomposed if char.isalnum())


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    keys = [_header_key(cell) for cell in header]
    for name in names:
        if name in keys:
            return keys.index(name)
    return None


def _span(start: int, end: int) -> str:
    return f" (record spans lines {start} to {end}: an unclosed quote?)" if end > start else ""


def _unescape(cell: str) -> str:
    # Undo the quote our export puts before formula-like cells.
    if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell


def _parse_locale(value: str) -> str | None:
    key = _header_key(value)
    if key in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[key]
    match = _LANGUAGE_TAG.fullmatch(value.strip().lower())
    return match.group(1) if match and match.group(1) in LANGUAGES else None


class _Columns:
    """Which column holds what, decided once from the header."""

    def __init__(self, header: list[str]) -> None:
        self.count = len(header)
        email = _find(header, _EMAIL_HEADERS)
        if email is None:  # _choose_delimiter made sure of it; kept for the type checker
            raise ImportAborted("no email column")
        self.email = email
        self.full_name = _find(header, _FULL_NAME_HEADERS)
        self.first_name = _find(header, _FIRST_NAME_HEADERS)
        self.last_name = _find(header, _LAST_NAME_HEADERS)
        self.locale = _find(header, _LOCALE_HEADERS)
        self.locale_key = header[self.locale].strip() if self.locale is not None else ""
        keys = [_header_key(cell) for cell in header]
        own_export = "attributes" in keys and "consentsource" in keys
        self.status = keys.index("status") if own_export else None
        self.attributes_json = keys.index("attributes") if own_export else None
        used = {self.email, self.full_name, self.first_name, self.last_name, self.locale}
        used.add(self.attributes_json)
        if own_export:
            used.update(keys.index(key) for key in _EXPORT_STATE_HEADERS if key in keys)
        self.extra: list[tuple[int, str]] = []
        taken: set[str] = set()
        for index, cell in enumerate(header):
            if index in used:
                continue
            name = cell.strip() or f"column {index + 1}"
            if name in taken:
                name = f"{name} ({index + 1})"
            taken.add(name)
            self.extra.append((index, name))

    def row(
        self, start: int, end: int, fields: list[str], bad_byte: int | None
    ) -> _Row | RejectedRow:
        """Turn one record into a row to import, or say why it cannot be imported."""
        raw_email = fields[self.email].strip() if len(fields) > self.email else ""
        reason = None
        if bad_byte is not None:
            reason = f"not UTF-8 (byte 0x{bad_byte:02X}): save the file as CSV UTF-8"
        elif len(fields) < self.count:
            reason = f"{len(fields)} fields where the header has {self.count}"
        elif len(fields) > self.count and any(cell.strip() for cell in fields[self.count :]):
            reason = (
                f"{len(fields)} fields where the header has {self.count} "
                f"(a delimiter inside an unquoted value?)"
            )
        elif not raw_email:
            reason = "the email cell is empty"
        if reason is not None:
            return RejectedRow(start, raw_email[:320], reason + _span(start, end))
        try:
            email = normalise(_unescape(raw_email))
        except InvalidAddress as exc:
            return RejectedRow(start, raw_email[:320], str(exc) + _span(start, end))

        name = self._cell(fields, self.full_name)
        if not name:
            parts = (self._cell(fields, self.first_name), self._cell(fields, self.last_name))
            name = " ".join(part for part in parts if part)
        try:
            name = person_name(name)
        except UnusableText as exc:
            return RejectedRow(start, email, str(exc) + _span(start, end))
        attributes: dict[str, Any] = {}
        raw_locale = self._cell(fields, self.locale)
        locale = _parse_locale(raw_locale) if raw_locale else None
        if raw_locale and locale is None:
            attributes[self.locale_key] = raw_locale  # not a language tag: keep it as typed
        if self.attributes_json is not None:
            attributes.update(_json_object(self._cell(fields, self.attributes_json)))
        for index, key in self.extra:
            value = self._cell(fields, index)
            if value:
                attributes[key] = value
        opted_out = self._cell(fields, self.status).lower() == "unsubscribed"
        return _Row(start, email, name, locale, attributes, opted_out)

    @staticmethod
    def _cell(fields: list[str], index: int | None) -> str:
        if index is None or index >= len(fields):
            return ""
        return _unescape(fields[index].strip())


def _json_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"attributes": text}
    return value if isinstance(value, dict) else {"attributes": text}


# --- Writing a batch --------------------------------------------------------------


def _apply_batch(
    session: Session,
    newsletter_id: int,
    language: str,
    rows: list[_Row],
    consent: _Consent,
) -> _Outcome:
    """Subscribe one batch of parsed rows: a handful of statements whatever its size."""
    outcome = _Outcome()
    unique: dict[str, _Row] = {}
    for row in rows:
        seen = unique.get(row.email)
        if seen is None:
            unique[row.email] = _Row(
                row.line, row.email, row.name, row.locale, dict(row.attributes), row.opted_out
            )
        else:
            seen.name = seen.name or row.name
            seen.locale = seen.locale or row.locale
            seen.attributes.update(row.attributes)
            seen.opted_out = seen.opted_out or row.opted_out
    emails = list(unique)

    markers = {subscriptions.erased_marker(email): email for email in emails}
    domains = {suppressions.domain_key(email) for email in emails}
    # Addresses, erased readers' markers and whole "@domain" entries.
    suppressed = {
        markers.get(email, email)
        for email in session.scalars(
            select(Suppression.email).where(
                Suppression.email.in_([*emails, *markers, *domains]),
                or_(
                    Suppression.newsletter_id.is_(None), Suppression.newsletter_id == newsletter_id
                ),
            )
        )
    }
    known = {
        row.email: row
        for row in session.execute(
            select(
                Subscriber.id,
                Subscriber.email,
                Subscriber.name,
                Subscriber.attributes,
                Subscriber.status,
            ).where(Subscriber.email.in_(emails))
        )
    }
    known_ids = [row.id for row in known.values()]
    current = {}
    if known_ids:  # a batch of new addresses needs no lookup
        current = {
            row.subscriber_id: row
            for row in session.execute(
                select(Subscription.id, Subscription.subscriber_id, Subscription.status).where(
                    Subscription.newsletter_id == newsletter_id,
                    Subscription.subscriber_id.in_(known_ids),
                )
            )
        }

    skip_reason: dict[str, str] = {}
    new_subscribers: list[dict[str, Any]] = []
    subscriber_updates: list[dict[str, Any]] = []
    to_subscribe: list[str] = []  # addresses of subscribers without a subscription yet
    to_confirm: list[int] = []  # pending subscription ids
    for email, row in unique.items():
        existing = known.get(email)
        subscription = current.get(existing.id) if existing is not None else None
        # Unsubscribing also suppresses for that newsletter: name the more precise cause.
        if row.opted_out or (
            subscription is not None and subscription.status == SubscriptionStatus.UNSUBSCRIBED
        ):
            skip_reason[email] = "unsubscribed"
            continue
        if (email in suppressed or suppressions.domain_key(email) in suppressed) or (
            existing is not None and existing.status != SubscriberStatus.ACTIVE
        ):
            skip_reason[email] = "suppressed"
            continue
        if existing is None:
            new_subscribers.append(
                {
                    "email": email,
                    "name": row.name,
                    "locale": row.locale or language,
                    "status": SubscriberStatus.ACTIVE,
                    "attributes": row.attributes,
                    "created_at": consent.at,
                    "updated_at": consent.at,
                }
            )
            to_subscribe.append(email)
            continue
        attributes = {**existing.attributes, **row.attributes}
        name = existing.name or row.name
        if attributes != existing.attributes or name != existing.name:
            subscriber_updates.append(
                {
                    "id": existing.id,
                    "name": name,
                    "attributes": attributes,
                    "updated_at": consent.at,
                }
            )
        if subscription is None:
            to_subscribe.append(email)
        elif consent.confirmed and subscription.status == SubscriptionStatus.PENDING:
            to_confirm.append(subscription.id)

    ids = {email: row.id for email, row in known.items()}
    if new_subscribers:
        inserted = session.execute(
            insert(Subscriber).returning(Subscriber.id, Subscriber.email), new_subscribers
        )
        ids.update({row.email: row.id for row in inserted})
    if subscriber_updates:
        session.execute(update(Subscriber), subscriber_updates)
    if to_subscribe:
        status = SubscriptionStatus.CONFIRMED if consent.confirmed else SubscriptionStatus.PENDING
        session.execute(
            insert(Subscription),
            [
                {
                    "newsletter_id": newsletter_id,
                    "subscriber_id": ids[email],
                    "status": status,
                    "consent_at": consent.at,
                    "consent_source": consent.source,
                    "confirmed_at": consent.at if consent.confirmed else None,
                    "created_at": consent.at,
                }
                for email in to_subscribe
            ],
        )
    if to_confirm:
        session.execute(
            update(Subscription),
            [
                {
                    "id": subscription_id,
                    "status": SubscriptionStatus.CONFIRMED,
                    "consent_at": consent.at,
                    "consent_source": consent.source,
                    "confirmed_at": consent.at,
                }
                for subscription_id in to_confirm
            ],
        )

    outcome.subscribed = len(to_subscribe)
    outcome.confirmed = len(to_confirm)
    if to_subscribe:
        joined = [webhooks.subscriber_item(ids[email], email) for email in to_subscribe]
        webhooks.emit(session, newsletter_id, "subscribed", joined, now=consent.at)
        if consent.confirmed:
            webhooks.emit(session, newsletter_id, "confirmed", joined, now=consent.at)
    if to_confirm:
        by_id = {row.id: email for email, row in known.items()}
        chosen = set(to_confirm)
        confirmed = [
            webhooks.subscriber_item(current_row.subscriber_id, by_id[current_row.subscriber_id])
            for current_row in current.values()
            if current_row.id in chosen
        ]
        webhooks.emit(session, newsletter_id, "confirmed", confirmed, now=consent.at)
    counted: set[str] = set()
    for row in rows:
        if row.email in skip_reason:
            outcome.skipped.append(SkippedRow(row.line, row.email, skip_reason[row.email]))
        elif row.email in known or row.email in counted:
            outcome.merged += 1
        else:
            outcome.added += 1
        counted.add(row.email)
    return outcome
