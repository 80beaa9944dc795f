"""Events that follow a delivery: opens, clicks, feedback, unsubscribes, bounces."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, str_enum, utcnow


class EventKind(enum.Enum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    FEEDBACK = "feedback"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


class Actor(enum.Enum):
    """Who caused an event, as service.tracking.classify decides it."""

    HUMAN = "human"
    MACHINE = "machine"


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_edition_kind", "edition_id", "kind"),
        Index("ix_event_delivery_kind", "delivery_id", "kind"),
        # A report a relay sends twice (webhook retries) is recorded once.
        Index("ix_event_source_key", "source_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind))
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletter.id", ondelete="CASCADE")
    )
    link_index: Mapped[int | None]  # clicks: position in edition.tracked_links
    value: Mapped[str | None] = mapped_column(String(200))  # feedback yes/no, bounce code
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    # What tells a person from a machine (public links only; never the full address).
    method: Mapped[str | None] = mapped_column(String(8))  # GET or HEAD
    user_agent: Mapped[str | None] = mapped_column(String(400))
    network: Mapped[str | None] = mapped_column(String(50))  # IPv4 /24 or IPv6 /48
    # Seconds between the relay accepting the message and this event (negative: before).
    seconds_after: Mapped[float | None]
    actor: Mapped[Actor | None] = mapped_column(str_enum(Actor, length=10))
    actor_rule: Mapped[str | None] = mapped_column(String(40))  # the rule that decided
    # Provider's id of a webhook report ("ses:…", "mailgun:…"): the same report is kept once.
    source_key: Mapped[str | None] = mapped_column(String(200))
