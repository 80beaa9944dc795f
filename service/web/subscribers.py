"""Subscriber pages for editors: list and search, one subscriber's history, tags,
bulk actions, CSV import and export.

Filters travel as query parameters (and as hidden fields of the bulk form), so a
bulk action on "all matching" acts on exactly what the editor was looking at.
"""

from __future__ import annotations

import enum
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from markupsafe import escape
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as BaseResponse

from service import newsletters
from service.audience import confirmations, exports, signup, subscribers
from service.audience.import_runs import IMPORT_BATCH, ImportDone, ImportRun
from service.audience.imports import ImportProgress
from service.audience.subscribers import SubscriberFilter
from service.broker import CeleryQueue
from service.models import Newsletter, Subscriber, SubscriberStatus, SubscriptionStatus, utcnow
from service.numbers import int_or_none
from service.team.permissions import Permission
from service.web.deps import (
    db,
    ensure_subscribers,
    newsletter_slug,
    requires,
    settings,
    subscriber_of,
    who,
)
from service.web.i18n import _, ngettext

blueprint = Blueprint("subscribers", __name__, url_prefix="/subscribers")

E = TypeVar("E", bound=enum.Enum)
BULK_ACTIONS = ("tag", "untag", "unsubscribe", "delete", "resend")
CONFIRMED_ACTIONS = ("unsubscribe", "delete", "resend")  # they cannot be undone from here
PREVIEW_ROWS = 10
EXPORT_CHUNK = 64 * 1024
EXPORT_SPOOL = 4 * 1024 * 1024  # above this the export spools to a temporary file


@dataclass(frozen=True)
class View:
    """The filter as the editor set it: the domain filter plus its URL parameters."""

    filter: SubscriberFilter
    newsletter: Newsletter | None
    params: dict[str, str]  # non-empty filter parameters, for links and hidden fields


def _enum(kind: type[E], value: str) -> E | None:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        abort(400, _("unknown {kind} {value}", kind=kind.__name__, value=repr(value)))


def _newsletter(slug: str) -> Newsletter | None:
    if not slug:
        return None
    try:
        return newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        abort(404)


def _view(values: Mapping[str, str]) -> View:
    names = ("newsletter", "q", "status", "state", "tag")
    params = {name: values.get(name, "").strip() for name in names}
    newsletter = _newsletter(params["newsletter"])
    filter_ = SubscriberFilter(
        newsletter_id=newsletter.id if newsletter else None,
        search=params["q"][:320],
        subscription_status=_enum(SubscriptionStatus, params["status"]),
        subscriber_status=_enum(SubscriberStatus, params["state"]),
        tag=" ".join(params["tag"].split()),
    )
    return View(filter_, newsletter, {key: value for key, value in params.items() if value})


def _list_url(view: View) -> str:
    values: dict[str, Any] = dict(view.params)
    return url_for(".index", **values)


def _import_target(kwargs: Mapping[str, Any]) -> Collection[int] | None:
    # The upload form opens for every editor with AUDIENCE; the import names its newsletter.
    if request.method == "GET":
        return None
    return newsletter_slug("newsletter", form=True)(kwargs)


def _bulk_target(kwargs: Mapping[str, Any]) -> Collection[int] | None:
    # The newsletter the form names (what "all matching", unsubscribe and resend act on)
    # must be one of the editor's; selected rows are also checked one by one in the view
    # (ensure_subscribers). "All matching" with no newsletter needs every newsletter.
    named = newsletter_slug("newsletter", form=True)(kwargs)
    if named or request.form.get("scope") == "matching":
        return named
    return None


def _cursor(name: str) -> int | None:
    return int_or_none(request.args.get(name))


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """The subscriber list: search, filters, pages and the bulk-action bar."""
    session = db()
    view = _view(request.args)
    page = subscribers.search(
        session, view.filter, older_than=_cursor("older"), newer_than=_cursor("newer")
    )
    return render_template(
        "web/subscribers/index.html",
        view=view,
        page=page,
        confirmation_mails=(
            confirmations.progress(session, newsletter_id=view.newsletter.id)
            if view.newsletter
            else None
        ),
        newsletters=newsletters.list_all(session),
        tags=subscribers.tags_in_use(session),
        subscription_statuses=list(SubscriptionStatus),
        subscriber_statuses=list(SubscriberStatus),
    )


def _subscriber(subscriber_id: int) -> Subscriber:
    found = db().get(Subscriber, subscriber_id)
    if found is None:
        abort(404)
    return found


@blueprint.get("/<int:subscriber_id>")
@requires(Permission.READ)
def detail(subscriber_id: int) -> str:
    """One subscriber: profile, subscriptions with consent, deliveries, events, suppressions."""
    found = subscribers.history(db(), subscriber_id)
    if found is None:
        abort(404)
    return render_template(
        "web/subscribers/detail.html", history=found, tags=subscribers.tags_in_use(db())
    )


@blueprint.post("/<int:subscriber_id>/tags")
@requires(Permission.AUDIENCE, subscriber_of())
def add_tag(subscriber_id: int) -> BaseResponse:
    """Give this subscriber a tag."""
    _subscriber(subscriber_id)
    try:
        subscribers.tag(db(), [subscriber_id], request.form.get("tag", ""))
    except subscribers.InvalidTag as exc:
        flash(str(exc), "error")
    else:
        db().commit()
    return redirect(url_for(".detail", subscriber_id=subscriber_id))


@blueprint.post("/<int:subscriber_id>/tags/remove")
@requires(Permission.AUDIENCE, subscriber_of())
def remove_tag(subscriber_id: int) -> BaseResponse:
    """Take a tag off this subscriber."""
    _subscriber(subscriber_id)
    try:
        subscribers.untag(db(), [subscriber_id], request.form.get("tag", ""))
    except subscribers.InvalidTag as exc:
        flash(str(exc), "error")
    else:
        db().commit()
    return redirect(url_for(".detail", subscriber_id=subscriber_id))


@blueprint.post("/bulk")
@requires(Permission.AUDIENCE, _bulk_target)
def bulk() -> str | BaseResponse:
    """Tag, untag, unsubscribe or delete the selected rows, or every row matching the filter."""
    session = db()
    form = request.form
    view = _view(form)
    back = _list_url(view)
    action = form.get("action", "")
    if action not in BULK_ACTIONS:
        flash(_("Choose an action."), "error")
        return redirect(back)
    target: subscribers.Target
    if form.get("scope") == "matching":
        target = view.filter
        ids: list[int] = []
    else:
        ids = sorted({n for value in form.getlist("id") if (n := int_or_none(value)) is not None})
        target = ids
        ensure_subscribers(Permission.AUDIENCE, ids)
        if not ids:
            flash(_("Select at least one subscriber, or choose “all matching”."), "error")
            return redirect(back)
    if action == "resend":
        return _resend(session, view, target, ids, confirmed=form.get("confirm") == "yes")
    tag = form.get("tag_name", "")  # "tag" is the list's tag filter
    if action in ("tag", "untag"):
        try:
            tag = subscribers.clean_tag(tag)
        except subscribers.InvalidTag as exc:
            flash(str(exc), "error")
            return redirect(back)

    if action in CONFIRMED_ACTIONS and form.get("confirm") != "yes":
        return _confirm_page(session, view, action, target, ids)

    if action == "tag":
        done = subscribers.tag(session, target, tag)
        message = _("Tagged {people} “{tag}”.", people=_people(done), tag=tag)
    elif action == "untag":
        done = subscribers.untag(session, target, tag)
        message = _("Removed “{tag}” from {people}.", tag=tag, people=_people(done))
    elif action == "unsubscribe":
        newsletter_id = view.newsletter.id if view.newsletter else None
        done = subscribers.unsubscribe(session, target, newsletter_id=newsletter_id)
        message = ngettext("Ended {n} subscription.", "Ended {n} subscriptions.", done)
    else:
        done = subscribers.erase_many(session, target, who=who())
        message = _("Deleted {people} and their personal data.", people=_people(done))
    session.commit()
    flash(message, "ok")
    return redirect(back)


def _people(n: int) -> str:
    return ngettext("{n} subscriber", "{n} subscribers", n)


def _confirm_page(
    session: Session, view: View, action: str, target: subscribers.Target, ids: list[int]
) -> str:
    total, emails = subscribers.sample(session, target, PREVIEW_ROWS)
    return render_template(
        "web/subscribers/confirm.html",
        view=view,
        action=action,
        total=total,
        emails=emails,
        ids=ids,
        scope="selected" if ids else "matching",
    )


def _resend(
    session: Session, view: View, target: subscribers.Target, ids: list[int], *, confirmed: bool
) -> str | BaseResponse:
    """Queue the confirmation email again for the pending readers among the target."""
    back = _list_url(view)
    if view.newsletter is None:
        flash(_("Choose a newsletter to re-send its confirmation emails."), "error")
        return redirect(back)
    chosen = subscribers.target_ids(target)
    if not confirmed:
        total, emails = confirmations.resendable(session, view.newsletter.id, subscribers=chosen)
        return render_template(
            "web/subscribers/confirm_resend.html",
            view=view,
            total=total,
            emails=emails,
            ids=ids,
            scope="selected" if ids else "matching",
            cool_down=int(signup.RESEND_AFTER.total_seconds() // 60),
        )
    newsletter_id = view.newsletter.id
    _request_id, queued = confirmations.resend(session, newsletter_id, subscribers=chosen)
    session.commit()
    if queued:
        _enqueue_confirmations(newsletter_id)
        flash(
            ngettext("{n} confirmation email queued.", "{n} confirmation emails queued.", queued),
            "ok",
        )
    else:
        flash(_("No confirmation email queued: no pending reader could be mailed now."), "error")
    return redirect(back)


def _enqueuer() -> confirmations.Enqueue:
    """Hand a newsletter's queued confirmations to the workers (call after the commit)."""
    broker_url = settings().broker_url
    logger = current_app.logger

    def enqueue(newsletter_id: int) -> None:
        try:
            CeleryQueue(broker_url).send_confirmations(newsletter_id)
        except Exception:
            # The rows are queued in the database: the beat sweep hands them out later.
            logger.exception("could not enqueue the confirmations of newsletter %s", newsletter_id)

    return enqueue


def _enqueue_confirmations(newsletter_id: int) -> None:
    _enqueuer()(newsletter_id)


# --- Import and export --------------------------------------------------------------


def _sessions() -> sessionmaker[Session]:
    factory: sessionmaker[Session] = current_app.extensions["hebdo.sessions"]
    return factory


@blueprint.route("/import", methods=["GET", "POST"])
@requires(Permission.AUDIENCE, _import_target)
def import_csv() -> str | tuple[str, int] | Response:
    """Upload a CSV file, then stream a progress line per batch and the import report."""
    session = db()
    letters = newsletters.list_all(session)
    form = request.form
    chosen = form.get("newsletter") or request.args.get("newsletter", "")
    context: dict[str, Any] = {"newsletters": letters, "chosen": chosen, "form": form}
    if request.method == "GET":
        return render_template("web/subscribers/import.html", **context)

    errors = []
    newsletter = next((n for n in letters if n.slug == chosen), None)
    if newsletter is None:
        errors.append(_("Choose the newsletter to import into."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors.append(_("Choose a CSV file."))
    confirmed = form.get("consent") == "confirmed"
    reason = form.get("reason", "").strip()
    if confirmed and not reason:
        errors.append(_("Say where these readers already consented (the reason is recorded)."))
    if errors or newsletter is None or upload is None:
        return render_template("web/subscribers/import.html", errors=errors, **context), 400

    letter = _Letter(newsletter.id, newsletter.name, newsletter.slug)
    page = render_template(
        "web/subscribers/import_progress.html",
        newsletter=letter,
        filename=upload.filename,
        cut=_CUT,
    )
    head, middle, tail = page.split(_CUT)
    # Copied in chunks (memory stays flat); the import thread reads it by path and
    # deletes it, so it never touches the request's objects.
    path = _spool(upload)
    # The import commits batch by batch in its own sessions; the request's open
    # transaction would hold SQLite's write lock against them. Nothing below uses it.
    actor = who()  # read before the session closes
    session.rollback()
    session.close()
    run = ImportRun(
        _sessions(),
        letter.id,
        path,
        confirmed=confirmed,
        reason=reason or None,
        batch_size=int(current_app.config.get("HEBDO_IMPORT_BATCH", IMPORT_BATCH)),
        logger=current_app.logger,
        enqueue=_enqueuer(),
        who=actor,
    )
    # Started here, not in the generator: the import finishes (and the file goes)
    # even if the response is never read.
    run.start()
    parts = _import_page(run, letter, head, middle, tail)
    response = Response(stream_with_context(parts), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy must pass each line on at once
    return response


_CUT = "@@hebdo-import-stream@@"  # nothing autoescaping would change


@dataclass(frozen=True)
class _Letter:
    """What the streamed page needs of the newsletter, read before the session closes."""

    id: int
    name: str
    slug: str


def _spool(upload: FileStorage) -> str:
    handle, path = tempfile.mkstemp(prefix="hebdo-import-", suffix=".csv")
    try:
        with os.fdopen(handle, "wb") as target:
            upload.save(target)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _import_page(
    run: ImportRun, letter: _Letter, head: str, middle: str, tail: str
) -> Iterator[str]:
    try:
        yield head
        while True:
            event = run.events.get()
            if isinstance(event, ImportProgress):
                line = ngettext("{n} row read…", "{n} rows read…", event.rows_read)
                yield f'<p class="sb-import-line">{escape(line)}</p>\n'
                continue
            yield middle
            if isinstance(event, ImportDone):
                yield render_template(
                    "web/subscribers/_import_result.html", report=event.report, newsletter=letter
                )
            else:
                error = event.message or _(
                    "The import stopped on an unexpected error. "
                    "Batches finished before it are saved."
                )
                yield render_template(
                    "web/subscribers/_import_result.html", error=error, newsletter=letter
                )
            yield tail
            return
    finally:
        run.join()


@blueprint.get("/export.csv")
@requires(Permission.AUDIENCE, newsletter_slug("newsletter", form=True))
def export_csv() -> Response:
    """Download a newsletter's subscribers as CSV, optionally only one status."""
    slug = request.args.get("newsletter", "")
    newsletter = _newsletter(slug)
    if newsletter is None:
        abort(400, _("choose a newsletter to export"))
    status = _enum(SubscriptionStatus, request.args.get("status", ""))
    # Written in full before the first byte goes out: a database error then becomes
    # an error page rather than a truncated file that looks complete.
    spool: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the generator
        max_size=EXPORT_SPOOL, mode="w+t", encoding="utf-8", newline=""
    )
    try:
        # A BOM lets spreadsheets read accents right; the import skips it.
        spool.write("\ufeff")
        exports.export_csv(db(), newsletter, spool, status=status, who=who())
    except BaseException:
        spool.close()
        raise
    db().commit()  # the audit row
    spool.seek(0)
    name = f"{newsletter.slug}-{status.value if status else 'all'}-{utcnow():%Y%m%d}.csv"
    response = Response(_chunks(spool), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _chunks(spool: IO[str]) -> Iterator[str]:
    with spool:
        while chunk := spool.read(EXPORT_CHUNK):
            yield chunk
