"""Starting, pausing, resuming and cancelling the send of an edition."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service import deliveries, editions
from service.db import affected_rows
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, utcnow


@dataclass(frozen=True)
class SendStarted:
    """What begin() did: rows added to the outbox and batches to hand to workers."""

    edition_id: int
    recipients: int
    batches: int


def begin(
    session: Session,
    edition: Edition,
    *,
    base_url: str,
    templates_path: Path,
    batch_size: int,
    now: datetime | None = None,
) -> SendStarted:
    """Freeze the rendering (once) and snapshot the recipients into the outbox."""
    if edition.status in (EditionStatus.SENT, EditionStatus.CANCELLED):
        raise deliveries.SendError(f"edition {edition.number} is already {edition.status.value}")
    if edition.rendered_html is None:
        editions.freeze(session, edition, base_url=base_url, templates_path=templates_path)
    deliveries.start(session, edition, now=now)
    remaining = deliveries.progress(session, edition.id).remaining
    return SendStarted(edition.id, remaining, math.ceil(remaining / max(1, batch_size)))


def pause(session: Session, edition: Edition, reason: str = "paused by an editor") -> None:
    """Stop handing out rows; rows in flight finish, the rest wait for resume()."""
    if edition.status != EditionStatus.SENDING:
        raise deliveries.SendError(f"only a sending edition can be paused ({edition.status.value})")
    edition.status = EditionStatus.PAUSED
    edition.status_detail = reason
    session.flush()


def resume(session: Session, edition: Edition) -> int:
    """Continue a paused send where it stopped; return the rows left."""
    if edition.status != EditionStatus.PAUSED:
        raise deliveries.SendError(f"only a paused edition can be resumed ({edition.status.value})")
    edition.status = EditionStatus.SENDING
    edition.status_detail = ""
    session.flush()
    return deliveries.progress(session, edition.id).remaining


def cancel(session: Session, edition: Edition, now: datetime | None = None) -> int:
    """Cancel every row not yet sent; return how many were cancelled."""
    if edition.status in (EditionStatus.SENT, EditionStatus.CANCELLED):
        raise deliveries.SendError(f"edition {edition.number} is already {edition.status.value}")
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition.id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.CANCELLED, last_error="edition cancelled")
        .execution_options(synchronize_session=False)
    )
    edition.status = EditionStatus.CANCELLED
    edition.status_detail = f"cancelled at {(now or utcnow()).isoformat(timespec='seconds')}"
    session.flush()
    return affected_rows(result)


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
