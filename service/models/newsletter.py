"""A newsletter: who sends it, in which language, and its weekly slot."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import String, Text, Time, true
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, utcnow


class Newsletter(Base):
    __tablename__ = "newsletter"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="fr")
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_email: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    postal_address: Mapped[str] = mapped_column(Text, default="")
    website_url: Mapped[str | None] = mapped_column(String(500))
    # The weekly slot, read in the newsletter's own time zone (DST-safe).
    send_weekday: Mapped[int] = mapped_column(default=5)  # Monday = 0 … Saturday = 5
    send_time: Mapped[time] = mapped_column(Time, default=time(8, 0))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    # Off: editions go out with no open pixel and no rewritten links (results say so).
    tracking: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Newsletter {self.slug}>"
