"""Scheduling: editions go out at their time, read from the database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import sending
from service.models import Edition, EditionStatus, utcnow


def start_due(
    session: Session,
    *,
    base_url: str,
    templates_path: Path,
    batch_size: int,
    now: datetime | None = None,
) -> list[sending.SendStarted]:
    """Begin sending every scheduled edition whose time has come."""
    now = now or utcnow()
    due = session.scalars(
        select(Edition).where(
            Edition.status == EditionStatus.SCHEDULED, Edition.scheduled_at <= now
        )
    ).all()
    return [
        sending.begin(
            session, edition, base_url=base_url, templates_path=templates_path,
            batch_size=batch_size, now=now,
        )
        for edition in due
    ]  # fmt: skip
