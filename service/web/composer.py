"""The editor's composer: write an edition, or turn a pasted draft into one.

Views read the form into the edition JSON and hand it to service.editions.store.apply_data,
the one implementation of the content rules. When the data is refused the page is
rendered again from what the editor typed, never from the database, so no text is
lost. The autosave endpoint takes the same form fields and answers in JSON.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import (
    Blueprint,
    abort,
    flash,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from service import newsletters
from service.editions import store
from service.editions.drafts import ParsedDraft, parse_draft
from service.editions.store import EditionError, EditionLocked
from service.mail.render import markdown_to_html
from service.models import Edition, Newsletter
from service.sending import lifecycle
from service.team.permissions import Permission
from service.web.deps import (
    current_editor,
    db,
    edition_of,
    may,
    newsletter_slug,
    requires,
    settings,
)
from service.web.i18n import _, format_number, ngettext, status_label

blueprint = Blueprint("composer", __name__, url_prefix="/compose")

AUTOSAVE_SECONDS = 20
RELATED_KINDS = ("Article", "Vidéo", "Podcast", "Livre", "Rapport", "Entretien")

_ITEM_FIELDS = (
    "date",
    "title",
    "body",
    "source_name",
    "source_url",
    "image_url",
    "image_alt",
    "image_credit",
)
_RELATED_FIELDS = ("title", "date", "kind", "url")
_WHERE = re.compile(r"^(?P<where>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): (?P<reason>.+)$", re.DOTALL)
_OP = re.compile(
    r"^(?P<area>item|related)-(?P<verb>add|up|down|remove)(?:-(?P<index>[0-9]{1,9}))?$"
)
# The composer's own pages run no inline script and load nothing from elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


@dataclass(frozen=True)
class SizeBudget:
    """Bytes of the edition's HTML part against Gmail's clipping limit."""

    bytes: int

    @property
    def kilobytes(self) -> int:
        """Size in KB, rounded up so anything past the limit reads past it."""
        return math.ceil(self.bytes / 1024)

    @property
    def level(self) -> str:
        """ok, warn (past 90 KB) or over (Gmail clips it)."""
        return store.size_level(self.bytes)

    @property
    def label(self) -> str:
        """Reads like "48 KB of 102 KB"."""
        return _(
            "{size} KB of {limit} KB",
            size=format_number(self.kilobytes),
            limit=format_number(store.SIZE_LIMIT_BYTES // 1024),
        )

    @property
    def advice(self) -> str:
        """What the level means for the editor."""
        if self.level == "over":
            return _("Gmail will clip this edition: shorten it or move items to the next one.")
        if self.level == "warn":
            return _("Close to Gmail's 102 KB clipping limit.")
        return _("Well under Gmail's 102 KB clipping limit.")

    def as_json(self) -> dict[str, Any]:
        """What the autosave answer carries."""
        return {
            "bytes": self.bytes,
            "kb": self.kilobytes,
            "limit_bytes": store.SIZE_LIMIT_BYTES,
            "level": self.level,
            "label": self.label,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class FieldError:
    """A refused save: where (as in the edition JSON, e.g. items[2].title) and why."""

    where: str
    reason: str

    @classmethod
    def from_exception(cls, exc: EditionError) -> FieldError:
        """Split an EditionError's "where: reason" message."""
        match = _WHERE.match(str(exc))
        if match is None:
            return cls("", str(exc))
        return cls(match["where"], match["reason"])

    @property
    def message(self) -> str:
        """The error in the editor's terms: "News item 3, title: required"."""
        match = re.match(r"^(items|related)\[(\d+)\](?:\.(.+))?$", self.where)
        if match:
            number = int(match[2]) + 1
            if match[1] == "items":
                area = _("News item {number}", number=number)
            else:
                area = _("Related read {number}", number=number)
            field = _field_name(match[3] or "")
            place = _("{area}, {field}", area=area, field=field) if field else area
        else:
            place = _field_name(self.where)
        # The reason is the domain's own (EditionError) wording.
        return _("{place}: {reason}", place=place, reason=self.reason) if place else self.reason

    def as_json(self) -> dict[str, str]:
        """What the autosave answer carries."""
        return {"where": self.where, "reason": self.reason, "message": self.message}


def _words(where: str) -> str:
    words = where.replace(".", " ").replace("_", " ").split()
    return " ".join("URL" if word == "url" else word for word in words)


def _field_name(where: str) -> str:
    # The fields the content rules name (service/editions/store.py), in the editor's language.
    names = {
        "title": _("title"),
        "date": _("date"),
        "url": _("URL"),
        "source_url": _("source URL"),
        "image": _("image"),
        "image.url": _("image URL"),
        "items": _("news items"),
        "week_start": _("week start"),
        "week_end": _("week end"),
    }
    return names.get(where) or _words(where)


class _Conflict(Exception):
    """The edition changed since the editor's page was loaded."""


# --- reading the form -----------------------------------------------------------------


def _text(value: str) -> str:
    # Browsers send textarea lines as CRLF; the edition stores plain newlines.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _rows(form: MultiDict[str, str], prefix: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    columns = {name: form.getlist(f"{prefix}_{name}") for name in fields}
    count = max((len(values) for values in columns.values()), default=0)
    return [
        {name: values[i] if i < len(values) else "" for name, values in columns.items()}
        for i in range(count)
    ]


def _image(url: str, alt: str, credit: str) -> dict[str, Any] | None:
    url, alt, credit = url.strip(), alt.strip(), credit.strip()
    if not (url or alt or credit):
        return None
    return {"url": url or None, "alt": alt, "credit": credit}


def form_to_data(form: MultiDict[str, str]) -> dict[str, Any]:
    """The edition JSON from the composer's fields (rows left entirely blank are skipped)."""
    items = [
        {
            "date": row["date"].strip() or None,
            "title": row["title"].strip(),
            "body": _text(row["body"]),
            "source_name": row["source_name"].strip(),
            "source_url": row["source_url"].strip() or None,
            "image": _image(row["image_url"], row["image_alt"], row["image_credit"]),
        }
        for row in _rows(form, "item", _ITEM_FIELDS)
        if any(value.strip() for value in row.values())
    ]
    related = [
        {
            "title": row["title"].strip(),
            "date": row["date"].strip() or None,
            "kind": row["kind"].strip(),
            "url": row["url"].strip(),
        }
        for row in _rows(form, "related", _RELATED_FIELDS)
        if any(value.strip() for value in row.values())
    ]
    return {
        "title": form.get("title", "").strip(),
        "week_start": form.get("week_start", "").strip() or None,
        "week_end": form.get("week_end", "").strip() or None,
        "authors": [name.strip() for name in form.get("authors", "").split(",") if name.strip()],
        "subject": form.get("subject", "").strip(),
        "preheader": form.get("preheader", "").strip(),
        "image": _image(
            form.get("image_url", ""), form.get("image_alt", ""), form.get("image_credit", "")
        ),
        "synthesis": _text(form.get("synthesis", "")),
        "items": items,
        "related": related,
    }


def apply_op(data: dict[str, Any], op: str) -> dict[str, Any]:
    """Add, move or remove a row without JavaScript (the script does the same in the page)."""
    match = _OP.match(op)
    if match is None:
        return data
    key = "items" if match["area"] == "item" else "related"
    rows = list(data[key])
    index = int(match["index"] or 0)
    verb = match["verb"]
    if verb == "add":
        rows.append(_blank_item() if key == "items" else dict.fromkeys(_RELATED_FIELDS, ""))
    elif index >= len(rows):
        return data
    elif verb == "remove":
        del rows[index]
    elif verb == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif verb == "down" and index + 1 < len(rows):
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    return {**data, key: rows}


def _blank_item() -> dict[str, Any]:
    return {
        "date": None,
        "title": "",
        "body": "",
        "source_name": "",
        "source_url": None,
        "image": None,
    }


# --- the edition's state ----------------------------------------------------------------


def size_of(edition: Edition) -> SizeBudget:
    """The size of the HTML part subscribers will get (with tracked links)."""
    config = settings()
    return SizeBudget(
        store.html_size(
            edition, base_url=config.base_url, templates_path=config.email_templates_path
        )
    )


def _save(edition: Edition, form: MultiDict[str, str]) -> None:
    if not lifecycle.is_editable(edition):
        raise EditionLocked(f"edition {edition.number} is {edition.status.value}")
    sent_revision = form.get("revision")
    if sent_revision and sent_revision != store.revision(edition):
        raise _Conflict
    store.apply_data(edition, form_to_data(form))
    db().flush()


def _starter(newsletter: Newsletter) -> dict[str, Any]:
    # A new edition takes the title and authors of the last one and the coming week.
    latest = db().scalar(
        select(Edition)
        .where(Edition.newsletter_id == newsletter.id)
        .order_by(Edition.number.desc())
        .limit(1)
    )
    try:
        zone = ZoneInfo(newsletter.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    today = datetime.now(zone).date()
    week_end = today + timedelta(days=(newsletter.send_weekday - today.weekday()) % 7)
    return {
        "title": latest.title if latest else newsletter.name,
        "authors": list(latest.authors) if latest else [],
        "week_start": (week_end - timedelta(days=7)).isoformat(),
        "week_end": week_end.isoformat(),
        "items": [],
    }


def _newsletter(slug: str) -> Newsletter:
    try:
        return newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        abort(404)


def _edition(edition_id: int, *, for_update: bool = False) -> Edition:
    # Saving locks the row (PostgreSQL) so two saves cannot both pass the revision check.
    found = db().get(Edition, edition_id, with_for_update=for_update)
    if found is None:
        abort(404)
    return found


def _page(
    edition: Edition,
    data: dict[str, Any],
    *,
    error: FieldError | None = None,
    notice: str | None = None,
    revision_value: str | None = None,
) -> str:
    composes = may(Permission.COMPOSE, edition.newsletter_id)
    return render_template(
        "web/composer/edit.html",
        edition=edition,
        newsletter=edition.newsletter,
        data=data,
        error=error,
        notice=notice,
        readonly=not lifecycle.is_editable(edition) or not composes,
        composes=composes,
        revision=revision_value if revision_value is not None else store.revision(edition),
        size=size_of(edition),
        kinds=RELATED_KINDS,
        autosave_seconds=AUTOSAVE_SECONDS,
        messages=get_flashed_messages(),
    )


# --- views ----------------------------------------------------------------------------


def _json_login(view: Callable[..., Any]) -> Callable[..., Any]:
    # A script cannot follow a redirect to the login form: it gets a 401 it can explain.
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_editor() is None:
            message = _("Not saved: you are logged out. Log in again in another tab, then save.")
            return jsonify(ok=False, message=message), 401
        return view(*args, **kwargs)

    return wrapper


@blueprint.after_request
def _content_security_policy(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    return response


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """Every newsletter with its editions, newest first."""
    session = db()
    rows = [
        (
            newsletter,
            session.scalars(
                select(Edition)
                .where(Edition.newsletter_id == newsletter.id)
                .options(selectinload(Edition.items))
                .order_by(Edition.number.desc())
                .limit(30)
            ).all(),
        )
        for newsletter in newsletters.list_all(session)
    ]
    return render_template(
        "web/composer/index.html",
        rows=rows,
        editable=lifecycle.EDITABLE,
        messages=get_flashed_messages(),
    )


@blueprint.post("/<slug>/new")
@requires(Permission.COMPOSE, newsletter_slug())
def new(slug: str) -> Response:
    """Start a draft edition and open it in the composer."""
    newsletter = _newsletter(slug)
    edition = store.create(db(), newsletter, _starter(newsletter))
    db().commit()
    return redirect(url_for(".edit", edition_id=edition.id))


@blueprint.get("/editions/<int:edition_id>")
@requires(Permission.READ)
def edit(edition_id: int) -> str:
    """The composer for one edition (read-only once it has started sending)."""
    edition = _edition(edition_id)
    return _page(edition, store.to_data(edition))


@blueprint.post("/editions/<int:edition_id>")
@requires(Permission.COMPOSE, edition_of())
def save(edition_id: int) -> Response | tuple[str, int]:
    """Save the form; on a refusal show the typed text again with the reason."""
    edition = _edition(edition_id, for_update=request.form.get("op", "save") == "save")
    op = request.form.get("op", "save")
    if op != "save":
        data = apply_op(form_to_data(request.form), op)
        notice = _("Not saved yet: save when the edition is ready.")
        return _page(edition, data, notice=notice, revision_value=request.form.get("revision")), 200
    try:
        _save(edition, request.form)
    except _Conflict:
        db().rollback()
        error = FieldError(
            "",
            _(
                "this edition was saved elsewhere (another tab or editor) since you opened it. "
                "Your text below is not saved; save again to replace theirs, or reload to see it."
            ),
        )
        # The current revision goes into the form, so saving again is a deliberate overwrite.
        return _page(edition, form_to_data(request.form), error=error), 409
    except EditionLocked as exc:
        db().rollback()
        return _page(edition, form_to_data(request.form), error=FieldError("", str(exc))), 409
    except EditionError as exc:
        db().rollback()
        return (
            _page(
                edition,
                form_to_data(request.form),
                error=FieldError.from_exception(exc),
                revision_value=request.form.get("revision"),
            ),
            422,
        )
    db().commit()
    flash(_("Saved."))
    return redirect(url_for(".edit", edition_id=edition.id))


@blueprint.post("/editions/<int:edition_id>/autosave")
@_json_login
@requires(Permission.COMPOSE, edition_of())
def autosave(edition_id: int) -> tuple[Response, int]:
    """The page's periodic save: the same fields, answered in JSON."""
    edition = _edition(edition_id, for_update=True)
    try:
        _save(edition, request.form)
    except _Conflict:
        db().rollback()
        message = _(
            "Autosave paused: this edition was saved elsewhere (another tab or editor). "
            "Save to replace their version, or copy your text and reload."
        )
        return jsonify(ok=False, conflict=True, message=message), 409
    except EditionLocked as exc:
        db().rollback()
        return jsonify(ok=False, locked=True, message=str(exc)), 409
    except EditionError as exc:
        db().rollback()
        error = FieldError.from_exception(exc)
        return jsonify(ok=False, error=error.as_json(), message=error.message), 422
    db().commit()
    return jsonify(
        ok=True,
        revision=store.revision(edition),
        saved_at=datetime.now().astimezone().strftime("%H:%M:%S"),
        size=size_of(edition).as_json(),
    ), 200


@blueprint.post("/markdown")
@_json_login
@requires(Permission.COMPOSE)
def markdown_preview() -> Response:
    """Editor Markdown rendered and sanitised on the server, for the live preview."""
    payload = request.get_json(silent=True) or {}
    text = payload.get("text") if isinstance(payload, dict) else None
    return jsonify(html=str(markdown_to_html(text if isinstance(text, str) else "")))


@blueprint.route("/<slug>/paste", methods=["GET", "POST"])
@requires(Permission.COMPOSE, newsletter_slug())
def paste_new(slug: str) -> Response | str | tuple[str, int]:
    """Paste a draft, review what was read from it, and create a draft edition."""
    return _paste(_newsletter(slug), None)


@blueprint.route("/editions/<int:edition_id>/paste", methods=["GET", "POST"])
@requires(Permission.COMPOSE, edition_of())
def paste_into(edition_id: int) -> Response | str | tuple[str, int]:
    """Paste a draft over the content of an existing draft edition."""
    edition = _edition(edition_id)
    if not lifecycle.is_editable(edition):
        flash(
            _(
                "Edition {number} is {status}: it can no longer change.",
                number=edition.number,
                status=status_label(edition.status.value),
            )
        )
        return redirect(url_for(".edit", edition_id=edition.id))
    return _paste(edition.newsletter, edition)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _paste(newsletter: Newsletter, edition: Edition | None) -> Response | str | tuple[str, int]:
    text = _text(request.form.get("draft", ""))
    parsed: ParsedDraft | None = None
    error: str | None = None
    notice: str | None = None
    status = 200
    if request.method == "POST":
        parsed = parse_draft(text, language=newsletter.language)
        if request.form.get("op") == "create":
            if request.form.get("reviewed") != _digest(text):
                notice = _("The text changed since the last review: check the result again.")
            else:
                try:
                    if edition is None:
                        edition = store.create(db(), newsletter, parsed.edition)
                    else:
                        store.apply_data(edition, parsed.edition)
                        db().flush()
                except EditionError as exc:
                    db().rollback()
                    reason = FieldError.from_exception(exc).message
                    error = _("The draft cannot become an edition: {reason}", reason=reason)
                    status = 422
                else:
                    db().commit()
                    flash(
                        ngettext(
                            "Edition {number} filled from the pasted draft: {n} news item.",
                            "Edition {number} filled from the pasted draft: {n} news items.",
                            len(parsed.edition["items"]),
                            number=edition.number,
                        )
                    )
                    return redirect(url_for(".edit", edition_id=edition.id))
    page = render_template(
        "web/composer/paste.html",
        newsletter=newsletter,
        edition=edition,
        text=text,
        parsed=parsed,
        reviewed=_digest(text) if parsed is not None else "",
        error=error,
        notice=notice,
    )
    return (page, status) if status != 200 else page
