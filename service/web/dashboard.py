"""The editor's home: newsletters, editions, their send progress and controls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.wrappers import Response

from service import newsletters
from service.broker import CeleryQueue
from service.models import Edition, EditionStatus, utcnow
from service.sending import controls, outbox, schedule
from service.team.permissions import Permission
from service.web.deps import db, edition_of, requires, settings, who
from service.web.i18n import _, babel_locale, ngettext

blueprint = Blueprint("dashboard", __name__)
FAILURES_SHOWN = 50  # the failed deliveries listed on the edition page; the CLI lists all


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """Newsletters and their latest editions."""
    session = db()
    rows = []
    for newsletter in newsletters.list_all(session):
        latest = session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id)
            .order_by(Edition.number.desc())
            .limit(10)
        ).all()
        progress = [(e, outbox.progress(session, e.id)) for e in latest]
        rows.append((newsletter, progress, _slot_view(schedule.outlook(session, newsletter))))
    return render_template("web/dashboard.html", rows=rows)


def _slot_view(outlook: schedule.Outlook) -> dict[str, object]:
    """The next slot as the dashboard says it: when, how long until then, and a warning."""
    zone = ZoneInfo(outlook.zone)
    pattern = _("EEEE d MMMM HH:mm")  # a Babel (CLDR) date pattern, e.g. Saturday 7 December 08:00
    when = format_datetime(outlook.slot, pattern, tzinfo=zone, locale=babel_locale())
    return {"when": f"{when} ({zone.key})", "left": _time_left(outlook.left), "warn": outlook.warn}


def _time_left(left: timedelta) -> str:
    minutes = max(0, int(left.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return ngettext("{n} day {hours} h", "{n} days {hours} h", days, hours=hours)
    if hours:
        return _("{hours} h {minutes} min", hours=hours, minutes=minutes)
    return _("{minutes} min", minutes=minutes)


def _found(edition_id: int) -> Edition:
    found = db().get(Edition, edition_id)
    if found is None:
        abort(404)
    return found


def _local_label(moment: datetime, zone: ZoneInfo) -> str:
    # A Babel (CLDR) date pattern, so each language spells it its own way.
    pattern = _("EEEE dd MMMM y, HH:mm")
    return f"{format_datetime(moment, pattern, tzinfo=zone, locale=babel_locale())} ({zone.key})"


@blueprint.get("/editions/<int:edition_id>")
@requires(Permission.READ)
def edition(edition_id: int) -> str:
    """One edition: status, live progress with an ETA, and the send controls."""
    found = _found(edition_id)
    zone = ZoneInfo(found.newsletter.timezone)
    now = utcnow()
    slot = schedule.next_slot(found.newsletter, now)
    proposed = found.scheduled_at if found.status == EditionStatus.SCHEDULED else slot
    assert proposed is not None
    failed_count, failures = outbox.failures(db(), edition_id, limit=FAILURES_SHOWN)
    return render_template(
        "web/edition.html",
        edition=found,
        failures=failures,
        failed_count=failed_count,
        progress=outbox.progress(db(), edition_id),
        estimate=controls.estimate(db(), found, now),
        zone=zone.key,
        proposed=proposed.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
        next_slot=_local_label(slot, zone),
        scheduled_label=_local_label(found.scheduled_at, zone) if found.scheduled_at else "",
        resume_label=_local_label(found.resume_at, zone) if found.resume_at else "",
        not_ready=schedule.not_ready(found) if found.is_next_issue else [],
    )


@blueprint.post("/editions/<int:edition_id>/next-issue")
@requires(Permission.SEND, edition_of())
def next_issue(edition_id: int) -> Response:
    """Mark (or unmark) a draft as the next issue, scheduled by itself once ready."""
    found = _found(edition_id)
    on = request.form.get("on") != "off"
    try:
        schedule.mark_next_issue(db(), found, on)
    except outbox.SendError as exc:
        db().rollback()
        flash(str(exc), "error")
        return _back(edition_id)
    db().commit()
    flash(_("This is the next issue.") if on else _("No longer the next issue."), "ok")
    return _back(edition_id)


@blueprint.get("/editions/<int:edition_id>/progress.json")
@requires(Permission.READ)
def edition_progress(edition_id: int) -> Response:
    """Progress counts and the time left, polled by the edition page."""
    found = _found(edition_id)
    p = outbox.progress(db(), edition_id)
    estimate = controls.estimate(db(), found)
    return jsonify(
        status=found.status.value,
        detail=found.status_detail,
        queued=p.queued,
        sending=p.sending,
        sent=p.sent,
        failed=p.failed,
        cancelled=p.cancelled,
        total=p.total,
        per_second=round(estimate.per_second, 2),
        seconds_left=None if estimate.seconds_left is None else round(estimate.seconds_left),
        resume_at=found.resume_at.isoformat() if found.resume_at else None,
    )


def _back(edition_id: int) -> Response:
    return redirect(url_for("dashboard.edition", edition_id=edition_id))


@blueprint.post("/editions/<int:edition_id>/schedule")
@requires(Permission.SEND, edition_of())
def schedule_edition(edition_id: int) -> Response:
    """Schedule at the time given in the newsletter's zone, or at its next weekly slot."""
    found = _found(edition_id)
    when = None
    if request.form.get("slot") != "next":
        try:
            local = datetime.fromisoformat(request.form.get("at", ""))
        except ValueError:
            flash(_("Give a date and a time."), "error")
            return _back(edition_id)
        # The form speaks the newsletter's wall-clock time, whatever the browser's zone.
        when = local.replace(tzinfo=ZoneInfo(found.newsletter.timezone))
    try:
        scheduled = schedule.schedule(db(), found, when, who=who())
    except outbox.SendError as exc:
        db().rollback()
        flash(str(exc), "error")
        return _back(edition_id)
    db().commit()
    zone = ZoneInfo(found.newsletter.timezone)
    flash(_("Scheduled for {when}.", when=_local_label(scheduled, zone)), "ok")
    return _back(edition_id)


@blueprint.post("/editions/<int:edition_id>/unschedule")
@requires(Permission.SEND, edition_of())
def unschedule_edition(edition_id: int) -> Response:
    """Take a scheduled edition back to draft."""
    back_to_draft = _("Back to draft.")
    return _control(edition_id, lambda e: schedule.unschedule(db(), e, who=who()), back_to_draft)


@blueprint.post("/editions/<int:edition_id>/pause")
@requires(Permission.SEND, edition_of())
def pause_edition(edition_id: int) -> Response:
    """Pause the send; the rest waits for Resume."""
    return _stop(edition_id, lambda e: controls.pause(db(), e, who=who()))


@blueprint.post("/editions/<int:edition_id>/cancel")
@requires(Permission.SEND, edition_of())
def cancel_edition(edition_id: int) -> Response:
    """Cancel the send for good."""
    return _stop(edition_id, lambda e: controls.cancel(db(), e, who=who()))


def _stop(edition_id: int, operation: Callable[[Edition], object]) -> Response:
    """Pause or cancel, then report the counts once the messages in flight are settled."""
    found = _found(edition_id)
    try:
        operation(found)
    except outbox.SendError as exc:
        db().rollback()
        flash(str(exc), "error")
        return _back(edition_id)
    db().commit()
    settled = controls.settle(current_app.extensions["hebdo.sessions"], edition_id)
    p = settled.progress
    if found.status == EditionStatus.PAUSED:
        flash(_("Paused: {sent} sent, {left} left.", sent=p.sent, left=p.remaining), "ok")
    else:
        flash(
            _(
                "Cancelled: {cancelled} will not go out, {sent} sent.",
                cancelled=p.cancelled,
                sent=p.sent,
            ),
            "ok",
        )
    if settled.in_flight:
        flash(
            _(
                "Still being handed to the relay: {n}. The counts may still move by that many.",
                n=settled.in_flight,
            ),
            "error",
        )
    return _back(edition_id)


@blueprint.post("/editions/<int:edition_id>/resume")
@requires(Permission.SEND, edition_of())
def resume_edition(edition_id: int) -> Response:
    """Resume the send where it stopped and hand it to the workers."""
    found = _found(edition_id)
    config = settings()
    try:
        started = controls.resume(db(), found, batch_size=config.batch_size, who=who())
    except outbox.SendError as exc:
        db().rollback()
        flash(str(exc), "error")
        return _back(edition_id)
    db().commit()
    # After the commit, so the workers find the edition sending.
    CeleryQueue(config.broker_url).send_edition(edition_id, started.batches)
    left = started.recipients
    flash(ngettext("Resumed: {n} message to go.", "Resumed: {n} messages to go.", left), "ok")
    return _back(edition_id)


def _control(edition_id: int, operation: Callable[[Edition], object], done: str) -> Response:
    found = _found(edition_id)
    try:
        operation(found)
    except outbox.SendError as exc:
        db().rollback()
        flash(str(exc), "error")
    else:
        db().commit()
        flash(done, "ok")
    return _back(edition_id)
