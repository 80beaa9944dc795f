"""Deliveries: the outbox, one row per (edition, subscriber)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, str_enum, utcnow


class DeliveryStatus(enum.Enum):
    QUEUED = "queued"  # waiting, or waiting for a retry at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_expires_at
    SENT = "sent"
    FAILED = "failed"  # permanent failure or attempts exhausted
    CANCELLED = "cancelled"  # edition cancelled, or the reader left before it went


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        # With the id last, a claim reads the oldest due rows in index order and stops
        # at its batch: without it, PostgreSQL sorted every queued row of the edition
        # at each claim (SQLite's indexes end with the rowid anyway).
        Index("ix_delivery_edition_status", "edition_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    # Erasing a subscriber keeps the row for statistics, without the person.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    # Claims since the row last recorded an outcome. A row that keeps coming back
    # through lease expiry (its worker dies on it each time) is failed once it has
    # come back more than max_attempts times, so an edition always finishes.
    claims: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(250))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
