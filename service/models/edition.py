"""An edition: structured content, its frozen rendering, and its send state."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base
from service.models._types import UtcDateTime, str_enum, utcnow
from service.models.newsletter import Newsletter


class EditionStatus(enum.Enum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class Edition(Base):
    __tablename__ = "edition"
    __table_args__ = (UniqueConstraint("newsletter_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletter.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(300))
    week_start: Mapped[date | None] = mapped_column(Date)
    week_end: Mapped[date | None] = mapped_column(Date)
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(String(300), default="")
    preheader: Mapped[str] = mapped_column(String(300), default="")
    image: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {url, alt, credit}
    synthesis: Mapped[str] = mapped_column(Text, default="")  # Markdown
    related: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    status: Mapped[EditionStatus] = mapped_column(
        str_enum(EditionStatus), default=EditionStatus.DRAFT, index=True
    )
    status_detail: Mapped[str] = mapped_column(Text, default="")  # e.g. why it paused
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    send_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set when a send paused by itself (relay down): beat resumes it after this time.
    resume_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The weekly rhythm: beat schedules it to the newsletter's next slot once it is ready.
    is_next_issue: Mapped[bool] = mapped_column(default=False, server_default=false())

    # Frozen at send time: rendered once, personalised per recipient by substitution.
    rendered_subject: Mapped[str | None] = mapped_column(String(300))
    rendered_html: Mapped[str | None] = mapped_column(Text)
    rendered_text: Mapped[str | None] = mapped_column(Text)
    tracked_links: Mapped[list[str]] = mapped_column(JSON, default=list)
    rendered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    newsletter: Mapped[Newsletter] = relationship()
    items: Mapped[list[NewsItem]] = relationship(
        back_populates="edition",
        order_by="NewsItem.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"<Edition {self.id} #{self.number} {self.status.value}>"


class NewsItem(Base):
    __tablename__ = "news_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    date: Mapped[date | None] = mapped_column(Date)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    source_name: Mapped[str] = mapped_column(String(200), default="")
    source_url: Mapped[str | None] = mapped_column(String(1000))
    image: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {url, alt, credit}

    edition: Mapped[Edition] = relationship(back_populates="items")
