"""What happened to an edition: the figures of the results page, the CLI and the CSV.

One function, `edition_results`, reads an edition's deliveries and events and
counts them by the verdicts service.tracking.classify stored with each event.
Meanings (the same on the page, in `hebdo editions results --json` and the CSV):

- delivered: messages the relay accepted (delivery rows marked sent); failed: rows
  that failed for good; bounced: deliveries a bounce report came back for
  (hard ones suppress the address; soft ones are temporary).
- opens.human_unique: readers with a human open, or a human click or feedback
  answer (a reader who clicked saw the message, even with images off);
  opens.machine: pixel fetches judged to be a machine's (Apple's proxy, scanners).
- clicks: human_unique readers who clicked at least once, human_total human
  clicks, machine clicks; the same per news item and per link, in edition order.
- feedback: each reader's last human answer, yes or no.
- unsubscribes: readers who left through this edition's links, plus those who
  left from the preference centre in the week after it was sent (before the next).

Events stored before requests were described (no verdict) count as human, as
they were counted before the rules existed.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.editions import store
from service.mail.render import markdown_to_html
from service.models import (
    Actor,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    Subscription,
    utcnow,
)

DAYS = 7
_HREF = re.compile(r'href="([^"]+)"')


@dataclass
class Clicks:
    human_unique: int = 0
    human_total: int = 0
    machine: int = 0


@dataclass
class LinkFigures:
    index: int  # position in the edition's tracked links (the click URL's number)
    url: str
    human_unique: int = 0
    human_total: int = 0
    machine: int = 0


@dataclass
class ItemFigures:
    position: int  # 1-based, in edition order; 0 for links outside the news items
    title: str
    clicks: Clicks = field(default_factory=Clicks)
    links: list[LinkFigures] = field(default_factory=list)


@dataclass
class Day:
    day: int  # 1 = the first 24 hours after the send started
    opens: int  # readers whose first human open (or click) fell that day
    clicks: int  # human clicks that day


@dataclass
class EditionResults:
    edition: int
    number: int
    title: str
    status: str
    sent_at: datetime | None
    tracked: bool  # False: the edition went out with tracking off (no opens or clicks)
    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    unsubscribes_from_links: int = 0
    unsubscribes_in_week: int = 0
    human_opens: int = 0
    machine_opens: int = 0
    machine_open_readers: int = 0
    clicks: Clicks = field(default_factory=Clicks)
    feedback_yes: int = 0
    feedback_no: int = 0
    items: list[ItemFigures] = field(default_factory=list)
    other_links: ItemFigures | None = None  # synthesis, related reads, footer
    days: list[Day] = field(default_factory=list)
    machine_rules: dict[str, int] = field(default_factory=dict)  # why events were machines'

    @property
    def open_rate(self) -> float | None:
        return self.human_opens / self.delivered if self.delivered else None

    @property
    def click_rate(self) -> float | None:
        return self.clicks.human_unique / self.delivered if self.delivered else None

    @property
    def feedback_rate(self) -> float | None:
        answers = self.feedback_yes + self.feedback_no
        return self.feedback_yes / answers if answers else None


def _links_by_item(edition: Edition) -> dict[str, int]:
    """Which news item (1-based position) each outbound URL of the edition belongs to."""
    owner: dict[str, int] = {}
    for position, item in enumerate(edition.items, start=1):
        urls = [html.unescape(u) for u in _HREF.findall(str(markdown_to_html(item.body)))]
        if item.source_url:
            urls.append(item.source_url)
        for url in urls:
            owner.setdefault(url, position)
    return owner


def _is_human(actor: Actor | None) -> bool:
    return actor is not Actor.MACHINE


def edition_results(session: Session, edition_id: int) -> EditionResults:
    """Every figure of one edition (raises store.EditionError for an unknown id)."""
    edition = store.get(session, edition_id)
    started = edition.send_started_at or edition.sent_at
    results = EditionResults(
        edition=edition.id,
        number=edition.number,
        title=edition.title,
        status=edition.status.value,
        sent_at=edition.sent_at or started,
        tracked=store.is_tracked(edition) or edition.rendered_html is None,
    )
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.status)
        ).all()
    )
    results.delivered = counts.get(DeliveryStatus.SENT, 0)
    results.failed = counts.get(DeliveryStatus.FAILED, 0)

    rows = session.execute(
        select(
            Event.delivery_id,
            Event.subscriber_id,
            Event.kind,
            Event.actor,
            Event.actor_rule,
            Event.link_index,
            Event.value,
            Event.created_at,
        )
        .where(Event.edition_id == edition_id)
        .order_by(Event.created_at, Event.id)
    ).all()

    links = [LinkFigures(i, url) for i, url in enumerate(edition.tracked_links or [])]
    link_readers: dict[int, set[int | None]] = {i: set() for i in range(len(links))}
    hard: set[int | None] = set()
    soft: set[int | None] = set()
    complained: set[int | None] = set()
    left: set[int | None] = set()
    first_seen: dict[int | None, datetime] = {}  # first human open or click per delivery
    machine_open_readers: set[int | None] = set()
    clickers: set[int | None] = set()
    answers: dict[int | None, str] = {}
    day_clicks = [0] * DAYS
    for row in rows:
        human = _is_human(row.actor)
        if row.actor is Actor.MACHINE and row.actor_rule:
            results.machine_rules[row.actor_rule] = results.machine_rules.get(row.actor_rule, 0) + 1
        if row.kind == EventKind.BOUNCE:
            (hard if row.value == "hard" else soft).add(row.delivery_id)
        elif row.kind == EventKind.COMPLAINT:
            complained.add(row.delivery_id)
        elif row.kind == EventKind.UNSUBSCRIBE:
            left.add(row.subscriber_id if row.subscriber_id is not None else row.delivery_id)
        elif row.kind == EventKind.OPEN:
            if human:
                first_seen.setdefault(row.delivery_id, row.created_at)
            else:
                results.machine_opens += 1
                machine_open_readers.add(row.delivery_id)
        elif row.kind == EventKind.CLICK:
            index = row.link_index if row.link_index is not None else -1
            link = links[index] if 0 <= index < len(links) else None
            if not human:
                results.clicks.machine += 1
                if link is not None:
                    link.machine += 1
                continue
            first_seen.setdefault(row.delivery_id, row.created_at)
            clickers.add(row.delivery_id)
            results.clicks.human_total += 1
            if link is not None:
                link.human_total += 1
                link_readers[index].add(row.delivery_id)
            day = _day(started, row.created_at)
            if day is not None:
                day_clicks[day] += 1
        elif row.kind == EventKind.FEEDBACK and human:
            first_seen.setdefault(row.delivery_id, row.created_at)
            answers[row.delivery_id] = row.value or ""  # ordered by time: the last one stays
    for index, readers in link_readers.items():
        links[index].human_unique = len(readers)

    results.hard_bounces, results.soft_bounces = len(hard), len(soft - hard)
    results.bounced = len(hard | soft)
    results.complaints = len(complained)
    results.human_opens = len(first_seen)
    results.machine_open_readers = len(machine_open_readers)
    results.clicks.human_unique = len(clickers)
    results.feedback_yes = sum(1 for a in answers.values() if a == "yes")
    results.feedback_no = sum(1 for a in answers.values() if a == "no")
    day_opens = [0] * DAYS
    for seen in first_seen.values():
        day = _day(started, seen)
        if day is not None:
            day_opens[day] += 1
    results.days = [Day(d + 1, day_opens[d], day_clicks[d]) for d in range(DAYS)]

    results.unsubscribes_from_links = len(left)
    results.unsubscribes_in_week = _unsubscribes_in_week(session, edition, left)
    results.unsubscribes = results.unsubscribes_from_links + results.unsubscribes_in_week
    results.items, results.other_links = _group(edition, links, link_readers)
    return results


def _day(started: datetime | None, at: datetime) -> int | None:
    if started is None:
        return None
    day = int((at - started).total_seconds() // 86400)
    return day if 0 <= day < DAYS else None


def _unsubscribes_in_week(session: Session, edition: Edition, counted: set[int | None]) -> int:
    """Readers who left from the preference centre after this edition, before the next one."""
    start = edition.send_started_at or edition.sent_at
    if start is None:
        return 0
    end = start + timedelta(days=DAYS)
    following = session.scalar(
        select(func.min(Edition.send_started_at)).where(
            Edition.newsletter_id == edition.newsletter_id,
            Edition.send_started_at > start,
        )
    )
    if following is not None and following < end:
        end = following
    people = session.scalars(
        select(Event.subscriber_id).where(
            Event.newsletter_id == edition.newsletter_id,
            Event.kind == EventKind.UNSUBSCRIBE,
            Event.edition_id.is_(None),
            Event.created_at >= start,
            Event.created_at < end,
        )
    ).all()
    return len(set(people) - counted)


def _group(
    edition: Edition, links: list[LinkFigures], readers: dict[int, set[int | None]]
) -> tuple[list[ItemFigures], ItemFigures | None]:
    owner = _links_by_item(edition)
    items = [ItemFigures(position, item.title) for position, item in enumerate(edition.items, 1)]
    other = ItemFigures(0, "")
    item_readers: dict[int, set[int | None]] = {}
    for link in links:
        position = owner.get(link.url, 0)
        group = items[position - 1] if position else other
        group.links.append(link)
        group.clicks.human_total += link.human_total
        group.clicks.machine += link.machine
        item_readers.setdefault(position, set()).update(readers[link.index])
    for position, people in item_readers.items():
        (items[position - 1] if position else other).clicks.human_unique = len(people)
    return items, (other if other.links else None)


def previous(session: Session, edition_id: int, count: int = 4) -> list[EditionResults]:
    """The results of the newsletter's editions sent before this one, newest first."""
    edition = store.get(session, edition_id)
    ids = session.scalars(
        select(Edition.id)
        .where(
            Edition.newsletter_id == edition.newsletter_id,
            Edition.number < edition.number,
            Edition.status.in_((EditionStatus.SENT, EditionStatus.SENDING, EditionStatus.PAUSED)),
        )
        .order_by(Edition.number.desc())
        .limit(count)
    ).all()
    return [edition_results(session, i) for i in ids]


def as_json(results: EditionResults) -> dict[str, Any]:
    """The figures as `hebdo editions results --json` prints them."""

    def link(figures: LinkFigures) -> dict[str, Any]:
        return {
            "url": figures.url,
            "index": figures.index,
            "human_unique": figures.human_unique,
            "human_total": figures.human_total,
            "machine": figures.machine,
        }

    def group(item: ItemFigures) -> dict[str, Any]:
        return {
            "position": item.position,
            "title": item.title,
            "clicks": asdict(item.clicks),
            "links": [link(lf) for lf in item.links],
        }

    return {
        "edition": results.edition,
        "number": results.number,
        "title": results.title,
        "status": results.status,
        "sent_at": results.sent_at.isoformat() if results.sent_at else None,
        "tracking": results.tracked,
        "delivered": results.delivered,
        "failed": results.failed,
        "bounced": results.bounced,
        "bounces": {"hard": results.hard_bounces, "soft": results.soft_bounces},
        "complaints": results.complaints,
        "unsubscribes": results.unsubscribes,
        "unsubscribes_detail": {
            "from_links": results.unsubscribes_from_links,
            "in_week": results.unsubscribes_in_week,
        },
        "opens": {
            "human_unique": results.human_opens,
            "machine": results.machine_opens,
            "machine_readers": results.machine_open_readers,
            "rate": _round(results.open_rate),
        },
        "clicks": {**asdict(results.clicks), "rate": _round(results.click_rate)},
        "feedback": {
            "yes": results.feedback_yes,
            "no": results.feedback_no,
            "rate": _round(results.feedback_rate),
        },
        "items": [group(item) for item in results.items],
        "other_links": group(results.other_links) if results.other_links else None,
        "days": [asdict(day) for day in results.days],
        "machine_rules": dict(sorted(results.machine_rules.items())),
    }


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 4)


CSV_COLUMNS = (
    "edition",
    "position",
    "item",
    "link_index",
    "url",
    "human_unique",
    "human_total",
    "machine",
)


def items_csv(results: EditionResults) -> str:
    """Per-item and per-link figures, one row per link (the item's total row first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    groups: Iterable[ItemFigures] = [*results.items]
    if results.other_links is not None:
        groups = [*groups, results.other_links]
    for item in groups:
        title = _cell(item.title)
        c = item.clicks
        writer.writerow(
            [
                results.edition,
                item.position,
                title,
                "",
                "",
                c.human_unique,
                c.human_total,
                c.machine,
            ]
        )
        for lf in item.links:
            writer.writerow(
                [
                    results.edition,
                    item.position,
                    title,
                    lf.index,
                    _cell(lf.url),
                    lf.human_unique,
                    lf.human_total,
                    lf.machine,
                ]
            )
    return out.getvalue()


def _cell(value: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheets (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class Week:
    start: date  # Monday (UTC)
    new: int  # subscriptions started that week (pending or confirmed)
    confirmed: int  # confirmations that week
    unsubscribed: int
    bounced: int  # readers whose address hard-bounced that week
    readers: int  # confirmed readers at the end of the week (not left, not bounced)


def subscribers_by_week(
    session: Session, newsletter_id: int, *, weeks: int = 12, now: datetime | None = None
) -> list[Week]:
    """The newsletter's audience over the last `weeks` weeks, oldest first."""
    now = now or utcnow()
    this_monday = now.date() - timedelta(days=now.weekday())
    starts = [this_monday - timedelta(weeks=weeks - 1 - n) for n in range(weeks)]
    bounced_at = dict(
        session.execute(
            select(Event.subscriber_id, func.min(Event.created_at))
            .join(Edition, Edition.id == Event.edition_id)
            .where(
                Edition.newsletter_id == newsletter_id,
                Event.kind == EventKind.BOUNCE,
                Event.value == "hard",
                Event.subscriber_id.is_not(None),
            )
            .group_by(Event.subscriber_id)
        ).all()
    )
    rows = session.execute(
        select(
            Subscription.subscriber_id,
            Subscription.created_at,
            Subscription.confirmed_at,
            Subscription.unsubscribed_at,
        ).where(Subscription.newsletter_id == newsletter_id)
    ).all()
    result = []
    for start in starts:
        begin = datetime.combine(start, time(0), tzinfo=UTC)
        end = begin + timedelta(weeks=1)

        def within(moment: datetime | None, begin: datetime = begin, end: datetime = end) -> bool:
            return moment is not None and begin <= moment < end

        def reading(row: Any, end: datetime = end) -> bool:
            gone = [row.unsubscribed_at, bounced_at.get(row.subscriber_id)]
            return (
                row.confirmed_at is not None
                and row.confirmed_at < end
                and not any(g is not None and g < end for g in gone)
            )

        result.append(
            Week(
                start=start,
                new=sum(1 for r in rows if within(r.created_at)),
                confirmed=sum(1 for r in rows if within(r.confirmed_at)),
                unsubscribed=sum(1 for r in rows if within(r.unsubscribed_at)),
                bounced=sum(1 for r in rows if within(bounced_at.get(r.subscriber_id))),
                readers=sum(1 for r in rows if reading(r)),
            )
        )
    return result
