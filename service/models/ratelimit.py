"""Counters of fixed time windows, shared by every process through the database.

Used for the delivery rate limits on the embedded default (Redis does it in
production) and for throttling public forms per IP address.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class RateWindow(Base):
    __tablename__ = "rate_window"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    count: Mapped[int] = mapped_column(default=0)
