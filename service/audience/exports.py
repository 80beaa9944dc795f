"""Subscriber export to CSV, streamed so a large list never sits in memory.

The file reads back with service.audience.imports: its ``attributes`` column is unpacked
and readers marked unsubscribed are not subscribed again.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audience.imports import FORMULA_STARTS
from service.models import Newsletter, Subscriber, Subscription, SubscriptionStatus
from service.team import audit

EXPORT_COLUMNS = (
    "email",
    "name",
    "locale",
    "status",
    "consent_at",
    "consent_source",
    "confirmed_at",
    "attributes",
)
_YIELD_PER = 1000


def export_csv(
    session: Session,
    newsletter: Newsletter,
    out: IO[str],
    *,
    status: SubscriptionStatus | None = None,
    who: audit.Who | None = None,
) -> int:
    """Write the newsletter's subscriptions as CSV (one row per subscriber); return the count.

    Recorded in the audit log (in the caller's transaction) when `who` is given."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    query = (
        select(
            Subscriber.email,
            Subscriber.name,
            Subscriber.locale,
            Subscription.status,
            Subscription.consent_at,
            Subscription.consent_source,
            Subscription.confirmed_at,
            Subscriber.attributes,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.newsletter_id == newsletter.id)
        .order_by(Subscriber.email)
        .execution_options(yield_per=_YIELD_PER)
    )
    if status is not None:
        query = query.where(Subscription.status == status)
    count = 0
    for row in session.execute(query):
        writer.writerow(
            (
                _text(row.email),
                _text(row.name),
                row.locale,
                row.status.value,
                _timestamp(row.consent_at),
                _text(row.consent_source),
                _timestamp(row.confirmed_at),
                json.dumps(row.attributes or {}, ensure_ascii=False, sort_keys=True),
            )
        )
        count += 1
    if who is not None:
        audit.record(
            session,
            who,
            "subscribers.export",
            object_type="newsletter",
            object_id=newsletter.id,
            detail={"rows": count, "status": status.value if status else "all"},
        )
    return count


def _text(value: str) -> str:
    # Names come from public forms: a leading "=" must not become a spreadsheet
    # formula on the editor's machine (CSV injection). The import strips the quote.
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _timestamp(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""
