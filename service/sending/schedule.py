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

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    at = edition.scheduled_at.isoformat()
    audit.edition_action(session, who, "edition.schedule", edition, {"at": at})
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
    return DueWork(started=started, resumed=resumed, pending=pending, finished=finished)
