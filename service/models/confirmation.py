"""Confirmation mails owed to pending readers: the outbox of the double opt-in notice.

An import (or an editor's re-send) inserts one QUEUED row per reader; workers
send them and record the outcome here, so progress is counted from rows and a
task that runs twice finds nothing left to send.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, str_enum, utcnow


class ConfirmationStatus(enum.Enum):
    QUEUED = "queued"  # to send (also while a worker holds the reader's notice slot)
    SENT = "sent"
    FAILED = "failed"  # refused for good, or out of attempts
    SKIPPED = "skipped"  # the reader confirmed, left or was suppressed before it went


class ConfirmationMail(Base):
    __tablename__ = "confirmation_mail"
    __table_args__ = (Index("ix_confirmation_mail_newsletter_status", "newsletter_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletter.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscription.id", ondelete="CASCADE"), index=True
    )
    # One import or one re-send click: what its progress is counted by.
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[ConfirmationStatus] = mapped_column(
        str_enum(ConfirmationStatus), default=ConfirmationStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str | None] = mapped_column(Text)  # why it failed or was skipped
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
