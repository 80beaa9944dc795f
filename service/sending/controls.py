"""Starting, pausing, resuming and cancelling the send of an edition.

Two kinds of pause: an editor's (resume_at is NULL: the edition waits for someone
to resume it) and the send's own when a fault outside the edition stops every
message (no relay accepts connections, the relay's or the database's disk is full;
resume_at is set: the beat sweep resumes it then, so an outage never needs a person).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db import affected_rows
from service.editions import store
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, utcnow
from service.sending import lifecycle, outbox
from service.team import audit

# After a relay outage the send tries again after the outage's length so far,
# within these bounds: 30 s, 30 s, 60 s, 120 s … up to 5 minutes.
RELAY_RETRY_MIN_SECONDS = 30.0
RELAY_RETRY_MAX_SECONDS = 300.0
ESTIMATE_WINDOW_SECONDS = 60.0  # the send rate behind the ETA is measured over this window
# After a pause or cancel, how long to wait for the messages workers had already
# handed to the relay, so the counts reported are the final ones. One SMTP
# transaction takes well under a second; a worker held back by the rate limit
# gives its rows back as soon as the limit lets it go.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class SendStarted:
    """What begin() or resume() did: rows left in the outbox and batches to hand to workers."""

    edition_id: int
    recipients: int
    batches: int


@dataclass(frozen=True)
class Settled:
    """The counts after a pause or cancel, once no worker holds any of the rows."""

    progress: outbox.Progress
    in_flight: int  # rows a worker still held at the deadline (0: the counts are final)


@dataclass(frozen=True)
class Estimate:
    """How fast an edition is going out and when it should be done."""

    per_second: float
    seconds_left: float | None  # None while there is no rate to go by


def _lock(session: Session, edition: Edition) -> None:
    # Re-read the row under a lock so a check-then-set cannot race the beat sweep
    # or another editor (SQLite serialises writers already: BEGIN IMMEDIATE).
    session.flush()
    session.refresh(edition, with_for_update=True)


def begin(
    session: Session,
    edition: Edition,
    *,
    base_url: str,
    templates_path: Path,
    batch_size: int,
    now: datetime | None = None,
    who: audit.Who | None = None,
) -> SendStarted:
    """Freeze the rendering (once) and snapshot the recipients into the outbox."""
    if edition.status in lifecycle.FINAL:
        raise outbox.SendError(f"edition {edition.number} is already {edition.status.value}")
    if edition.rendered_html is None:
        store.freeze(session, edition, base_url=base_url, templates_path=templates_path)
    outbox.start(session, edition, now=now)
    remaining = outbox.progress(session, edition.id).remaining
    audit.edition_action(session, who, "edition.send", edition, {"recipients": remaining})
    return SendStarted(edition.id, remaining, _batches(remaining, batch_size))


def _batches(rows: int, batch_size: int) -> int:
    return math.ceil(rows / max(1, batch_size))


def pause(
    session: Session,
    edition: Edition,
    reason: str = "paused by an editor",
    *,
    who: audit.Who | None = None,
) -> None:
    """Stop handing out rows; rows in flight finish, the rest wait for resume().

    Pausing an edition that paused itself (relay down) keeps it paused for good.
    """
    _lock(session, edition)
    if edition.status not in (EditionStatus.SENDING, EditionStatus.PAUSED):
        raise outbox.SendError(f"only a sending edition can be paused ({edition.status.value})")
    lifecycle.move(edition, EditionStatus.PAUSED, detail=reason)
    edition.resume_at = None
    session.flush()
    audit.edition_action(session, who, "edition.pause", edition)


def pause_for_relay(
    session: Session,
    edition: Edition,
    error: str,
    *,
    now: datetime | None = None,
    min_seconds: float = RELAY_RETRY_MIN_SECONDS,
    max_seconds: float = RELAY_RETRY_MAX_SECONDS,
) -> bool:
    """Pause a sending edition because no relay answers; the beat resumes it later."""
    return pause_for_fault(
        session,
        edition,
        f"SMTP relay unavailable ({error})",
        now=now,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
    )


def pause_for_fault(
    session: Session,
    edition: Edition,
    reason: str,
    *,
    now: datetime | None = None,
    min_seconds: float = RELAY_RETRY_MIN_SECONDS,
    max_seconds: float = RELAY_RETRY_MAX_SECONDS,
) -> bool:
    """Pause a sending edition for a fault outside it (relay down or full, disk full).

    The beat resumes it at resume_at and the send probes again; the wait grows with
    the outage, measured from the last message a relay accepted (or the start of the
    send), so a long outage is probed ever less often. `reason` says what went wrong
    in the status detail. Returns False when the edition was no longer sending
    (someone else decided).
    """
    _lock(session, edition)
    if edition.status != EditionStatus.SENDING:
        return False
    now = now or utcnow()
    last_sent = session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.edition_id == edition.id, Delivery.status == DeliveryStatus.SENT
        )
    )
    marks = [t for t in (last_sent, edition.send_started_at) if t is not None]
    outage = (now - max(marks)).total_seconds() if marks else 0.0
    wait = min(max_seconds, max(min_seconds, outage))
    resume_at = now + timedelta(seconds=wait)
    lifecycle.move(
        edition,
        EditionStatus.PAUSED,
        detail=f"paused: {reason}; trying again at {resume_at.isoformat(timespec='seconds')}"[
            :1000
        ],
    )
    edition.resume_at = resume_at
    session.flush()
    return True


def resume(
    session: Session, edition: Edition, *, batch_size: int, who: audit.Who | None = None
) -> SendStarted:
    """Continue a paused send where it stopped; what is left, like begin()."""
    _lock(session, edition)
    if edition.status != EditionStatus.PAUSED:
        raise outbox.SendError(f"only a paused edition can be resumed ({edition.status.value})")
    lifecycle.move(edition, EditionStatus.SENDING, detail="")
    edition.resume_at = None
    session.flush()
    remaining = outbox.progress(session, edition.id).remaining
    audit.edition_action(session, who, "edition.resume", edition, {"recipients": remaining})
    return SendStarted(edition.id, remaining, _batches(remaining, batch_size))


def resume_due(
    session: Session, *, batch_size: int, now: datetime | None = None
) -> list[SendStarted]:
    """Resume the editions that paused themselves and whose resume_at has passed."""
    now = now or utcnow()
    due = session.scalars(
        select(Edition)
        .where(
            Edition.status == EditionStatus.PAUSED,
            Edition.resume_at.is_not(None),
            Edition.resume_at <= now,
        )
        .order_by(Edition.id)
        .with_for_update(skip_locked=True)
    ).all()
    return [resume(session, edition, batch_size=batch_size) for edition in due]


def cancel(
    session: Session,
    edition: Edition,
    now: datetime | None = None,
    *,
    who: audit.Who | None = None,
) -> int:
    """Cancel every row not yet sent; return how many were cancelled."""
    _lock(session, edition)
    if edition.status in lifecycle.FINAL:
        raise outbox.SendError(f"edition {edition.number} is already {edition.status.value}")
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition.id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.CANCELLED, last_error="edition cancelled")
        .execution_options(synchronize_session=False)
    )
    cancelled_at = (now or utcnow()).isoformat(timespec="seconds")
    lifecycle.move(edition, EditionStatus.CANCELLED, detail=f"cancelled at {cancelled_at}")
    edition.resume_at = None
    session.flush()
    cancelled = affected_rows(result)
    audit.edition_action(session, who, "edition.cancel", edition, {"cancelled": cancelled})
    return cancelled


def settle(
    factory: sessionmaker[Session],
    edition_id: int,
    *,
    timeout: float = SETTLE_SECONDS,
    poll: float = 0.05,
) -> Settled:
    """Wait until the workers let go of an edition they were told to stop; its counts then.

    Call after the pause or cancel has been committed: workers check the edition
    before each message, so what they still hold is at most the message each had
    already handed to the relay (it counts as sent if the relay takes it) and the
    rows they give back right after it.
    """
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            held = outbox.in_flight(session, edition_id)
            progress = outbox.progress(session, edition_id)
        if held == 0 or time.monotonic() >= deadline:
            return Settled(progress, held)
        time.sleep(poll)


def editions_with_work(session: Session, now: datetime | None = None) -> list[int]:
    """Sending editions that have rows due now (new, retries, or expired leases)."""
    now = now or utcnow()
    due = (
        select(Delivery.edition_id)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Edition.status == EditionStatus.SENDING)
        .where(
            ((Delivery.status == DeliveryStatus.QUEUED)
             & ((Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now)))
            | ((Delivery.status == DeliveryStatus.SENDING) & (Delivery.lease_expires_at < now))
        )
        .distinct()
    )  # fmt: skip
    return list(session.scalars(due))


def finish_done(session: Session, now: datetime | None = None) -> list[int]:
    """Mark as sent the sending editions with nothing left (e.g. a worker died last)."""
    unfinished = select(Delivery.id).where(
        Delivery.edition_id == Edition.id,
        Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
    )
    done = session.scalars(
        select(Edition).where(Edition.status == EditionStatus.SENDING, ~unfinished.exists())
    ).all()
    return [e.id for e in done if outbox.finish_if_done(session, e, now=now)]


def estimate(session: Session, edition: Edition, now: datetime | None = None) -> Estimate:
    """The recent send rate and the time left at that rate."""
    now = now or utcnow()
    if edition.send_started_at is None:
        return Estimate(0.0, None)
    window_start = max(now - timedelta(seconds=ESTIMATE_WINDOW_SECONDS), edition.send_started_at)
    recent = session.scalar(
        select(func.count()).where(
            Delivery.edition_id == edition.id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at >= window_start,
        )
    )
    span = (now - window_start).total_seconds()
    rate = (recent or 0) / span if span > 0 else 0.0
    remaining = outbox.progress(session, edition.id).remaining
    if remaining == 0:
        return Estimate(rate, 0.0)
    return Estimate(rate, remaining / rate if rate > 0 else None)
