"""Scheduling: editions go out at their time, read from the database.

The database is the source of truth, not a broker ETA: the beat task calls
sweep() every few seconds, so a restart or a lost broker message never loses a
schedule, a retry or an automatic resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.editions import schema, store
from service.models import Edition, EditionStatus, Newsletter, utcnow
from service.sending import controls, lifecycle
from service.sending.outbox import SendError
from service.team import audit

log = logging.getLogger(__name__)

# A time a little in the past means "now" (the editor took a minute to click);
# anything older is more likely a typo than a wish to send at once.
PAST_GRACE = timedelta(minutes=1)


class ScheduleError(SendError):
    """The requested time cannot be used."""


@dataclass(frozen=True)
class DueWork:
    """What one sweep found for the workers."""

    started: list[controls.SendStarted]  # scheduled editions whose time came
    resumed: list[controls.SendStarted]  # editions that paused themselves, resumed
    pending: list[int]  # other sending editions with rows due (retries, expired leases)
    finished: list[int]  # sending editions with nothing left, now marked sent
    # Seconds until the first scheduled edition due before the next sweep, if there is
    # one: the beat starts it at its time instead of at the next tick (see SWEEP_SECONDS).
    next_start_in: float | None = None


# The beat sweeps this often (worker/celery_app.py). Each sweep also looks this far
# ahead, so an edition scheduled for 08:00:00 starts at 08:00:00, not at the next tick.
SWEEP_SECONDS = 15.0


def next_slot(newsletter: Newsletter, after: datetime) -> datetime:
    """The newsletter's first weekly slot strictly after `after`, in UTC.

    The slot is a wall-clock time in the newsletter's zone, so it moves in UTC
    across daylight-saving changes (Saturday 08:00 Paris: 07:00Z in winter,
    06:00Z in summer). A time skipped by a spring-forward change lands an hour
    later on the wall clock; a repeated one means its first occurrence.
    """
    if after.tzinfo is None:
        raise ScheduleError("next_slot needs a tz-aware time")
    zone = ZoneInfo(newsletter.timezone)
    local_day = after.astimezone(zone).date()
    days_ahead = (newsletter.send_weekday - local_day.weekday()) % 7
    for weeks in (0, 1):
        day = local_day + timedelta(days=days_ahead + 7 * weeks)
        slot = datetime.combine(day, newsletter.send_time, tzinfo=zone).astimezone(UTC)
        if slot > after:
            return slot
    raise AssertionError("unreachable: a slot a week later is always after")  # pragma: no cover


def schedule(
    session: Session,
    edition: Edition,
    when: datetime | None = None,
    *,
    now: datetime | None = None,
    who: audit.Who | None = None,
) -> datetime:
    """Schedule (or reschedule) an edition; None means the newsletter's next weekly slot.

    Returns the time in UTC. Allowed until sending starts.
    """
    now = now or utcnow()
    session.flush()
    session.refresh(edition, with_for_update=True)  # the beat may be starting it right now
    if not lifecycle.is_editable(edition):
        raise SendError(
            f"edition {edition.number} is {edition.status.value}: it can no longer be scheduled"
        )
    if when is None:
        when = next_slot(edition.newsletter, now)
    elif when.tzinfo is None:
        raise ScheduleError("give the time with its time zone, e.g. 2025-03-29T08:00+01:00")
    elif when < now - PAST_GRACE:
        raise ScheduleError(f"{when.isoformat()} is in the past")
    try:
        at = when.astimezone(UTC)
    except OverflowError as exc:
        raise ScheduleError(f"{when.isoformat()} is out of range") from exc
    lifecycle.move(edition, EditionStatus.SCHEDULED, detail="")
    edition.scheduled_at = at
    session.flush()
    stamp = edition.scheduled_at.isoformat()
    audit.edition_action(session, who, "edition.schedule", edition, {"at": stamp})
    return edition.scheduled_at


def unschedule(session: Session, edition: Edition, *, who: audit.Who | None = None) -> None:
    """Take a scheduled edition back to draft (allowed until sending starts)."""
    session.flush()
    session.refresh(edition, with_for_update=True)
    if edition.status != EditionStatus.SCHEDULED:
        raise SendError(f"edition {edition.number} is {edition.status.value}, not scheduled")
    lifecycle.move(edition, EditionStatus.DRAFT, detail="")
    edition.scheduled_at = None
    session.flush()
    audit.edition_action(session, who, "edition.unschedule", edition)


# The audit log's actor for a send the beat started at its scheduled time (who scheduled
# it is the edition.schedule row before it).
SCHEDULER = audit.Who(None, "scheduler")


def start_due(
    session: Session,
    *,
    base_url: str,
    templates_path: Path,
    batch_size: int,
    now: datetime | None = None,
) -> list[controls.SendStarted]:
    """Begin sending every scheduled edition whose time has come.

    An edition that cannot start (its rendering fails) stays scheduled with the
    error in its status detail, and does not hold up the others.
    """
    now = now or utcnow()
    due = session.scalars(
        select(Edition)
        .where(Edition.status == EditionStatus.SCHEDULED, Edition.scheduled_at <= now)
        .order_by(Edition.scheduled_at, Edition.id)
        .with_for_update(skip_locked=True)
    ).all()
    started = []
    for edition in due:
        try:
            with session.begin_nested():
                started.append(
                    controls.begin(
                        session,
                        edition,
                        base_url=base_url,
                        templates_path=templates_path,
                        batch_size=batch_size,
                        now=now,
                        who=SCHEDULER,
                    )
                )
        except Exception as exc:  # one broken edition must not hold up the others
            log.exception("edition %s could not start", edition.id)
            edition.status_detail = f"could not start: {exc}"[:1000]
            session.flush()
    return started


def sweep(
    session: Session,
    *,
    base_url: str,
    templates_path: Path,
    batch_size: int,
    now: datetime | None = None,
) -> DueWork:
    """Everything the beat does each tick: start, resume, find due rows, finish."""
    now = now or utcnow()
    started = start_due(
        session, base_url=base_url, templates_path=templates_path, batch_size=batch_size, now=now
    )
    resumed = controls.resume_due(session, batch_size=batch_size, now=now)
    handed = {s.edition_id for s in (*started, *resumed)}
    pending = [i for i in controls.editions_with_work(session, now=now) if i not in handed]
    finished = controls.finish_done(session, now=now)
    return DueWork(
        started=started,
        resumed=resumed,
        pending=pending,
        finished=finished,
        next_start_in=next_start_in(session, SWEEP_SECONDS, now=now),
    )


def next_start_in(session: Session, within: float, *, now: datetime | None = None) -> float | None:
    """Seconds until the earliest scheduled edition due in the next `within` seconds."""
    now = now or utcnow()
    first = session.scalar(
        select(func.min(Edition.scheduled_at)).where(
            Edition.status == EditionStatus.SCHEDULED,
            Edition.scheduled_at > now,
            Edition.scheduled_at <= now + timedelta(seconds=within),
        )
    )
    if first is None:
        return None
    return max(0.0, (first.replace(tzinfo=first.tzinfo or UTC) - now).total_seconds())


# --- the weekly rhythm ---------------------------------------------------------------------

BEAT = audit.Who(None, "beat")  # the audit log's name for what the beat does by itself
WARN_BEFORE = timedelta(hours=24)  # the dashboard warns when a slot this close has nothing


def N_(message: str) -> str:  # noqa: N802 - the gettext marker pybabel extracts
    """Mark a message for translation (the doors translate it when they show it)."""
    return message


def not_ready(edition: Edition) -> list[str]:
    """Why the edition cannot go out yet (empty: it is ready).

    Ready means: its document passes the edition schema (service.editions.schema), and
    it has a title, a subject and at least one news item.
    """
    reasons = []
    try:
        schema.validate(store.to_data(edition))
    except schema.EditionInvalid:
        reasons.append(N_("its content breaks the edition's rules (open it in the composer)"))
    if not edition.title.strip():
        reasons.append(N_("it has no title"))
    if not edition.subject.strip():
        reasons.append(N_("it has no subject"))
    if not edition.items:
        reasons.append(N_("it has no news item"))
    return reasons


def mark_next_issue(session: Session, edition: Edition, on: bool = True) -> None:
    """Mark (or unmark) a draft as its newsletter's next issue; one per newsletter.

    Beat schedules a marked draft to the next weekly slot once it is ready.
    """
    if on and not lifecycle.is_editable(edition):
        raise SendError(
            f"edition {edition.number} is {edition.status.value}: it cannot be the next issue"
        )
    if on:
        others = session.scalars(
            select(Edition).where(
                Edition.newsletter_id == edition.newsletter_id,
                Edition.is_next_issue.is_(True),
                Edition.id != edition.id,
            )
        )
        for other in others:
            other.is_next_issue = False
    edition.is_next_issue = on
    session.flush()


def schedule_next_issues(session: Session, *, now: datetime | None = None) -> list[int]:
    """Schedule every ready draft marked next issue to its newsletter's next slot (beat).

    The mark has done its job once the edition is scheduled: it is cleared, so taking the
    edition back to draft does not reschedule it. Each one is recorded in the audit log as
    `edition.schedule` by "beat". Returns the ids scheduled.
    """
    now = now or utcnow()
    marked = session.scalars(
        select(Edition)
        .where(Edition.is_next_issue.is_(True), Edition.status == EditionStatus.DRAFT)
        .order_by(Edition.id)
    ).all()
    done = []
    for edition in marked:
        if not_ready(edition):
            continue
        try:
            with session.begin_nested():
                when = schedule(session, edition, None, now=now)
                edition.is_next_issue = False
                audit.record(
                    session,
                    BEAT,
                    "edition.schedule",
                    object_type="edition",
                    object_id=edition.id,
                    detail={"at": when.isoformat(), "why": "next issue, ready"},
                )
        except SendError:  # it started or changed meanwhile: nothing to do for it
            log.info("next issue %s not scheduled", edition.id, exc_info=True)
            continue
        done.append(edition.id)
    return done


@dataclass(frozen=True)
class Outlook:
    """A newsletter's next weekly slot as the dashboard shows it."""

    slot: datetime  # UTC
    zone: str
    left: timedelta
    covered: bool  # an edition is scheduled for it, or a ready next issue waits for it

    @property
    def warn(self) -> bool:
        """The slot is less than a day away and nothing will go out at it."""
        return self.left < WARN_BEFORE and not self.covered


def outlook(session: Session, newsletter: Newsletter, *, now: datetime | None = None) -> Outlook:
    """The next slot, the time left until it, and whether an edition is ready for it."""
    now = now or utcnow()
    slot = next_slot(newsletter, now)
    scheduled = session.scalar(
        select(Edition.id)
        .where(
            Edition.newsletter_id == newsletter.id,
            Edition.status.in_((EditionStatus.SCHEDULED, EditionStatus.SENDING)),
        )
        .where((Edition.scheduled_at.is_(None)) | (Edition.scheduled_at <= slot))
        .limit(1)
    )
    covered = scheduled is not None
    if not covered:
        marked = session.scalars(
            select(Edition).where(
                Edition.newsletter_id == newsletter.id,
                Edition.is_next_issue.is_(True),
                Edition.status == EditionStatus.DRAFT,
            )
        ).all()
        covered = any(not not_ready(e) for e in marked)
    return Outlook(slot=slot, zone=newsletter.timezone, left=slot - now, covered=covered)
