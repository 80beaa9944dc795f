"""Events behind public links: opens, clicks, feedback and unsubscribes.

Every function takes a delivery id that came out of a verified token. The web door
does no write in the request: it turns the request into a `Pending` event (no
database access; for a click, one read of the stored target, so it can never be
an open redirect) and hands it to the buffer (service.tracking.buffer), which
calls `write` with a batch about once a second. `write` judges each event (human
or machine, service.tracking.classify) when it stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from service.audience import subscriptions
from service.models import Delivery, Edition, Event, EventKind, Subscription, utcnow
from service.tracking import classify


class UnknownDelivery(LookupError):
    """The token was valid but its delivery no longer exists."""


@dataclass(frozen=True)
class DeliveryRef:
    """The few facts about a delivery a public page needs."""

    delivery_id: int
    edition_id: int
    newsletter_id: int
    subscriber_id: int | None
    sent_at: datetime | None = None  # when the relay accepted the message


@dataclass(frozen=True)
class Seen:
    """What the web door saw of a public request (the address is reduced to its network)."""

    method: str = "GET"
    user_agent: str = ""
    address: str | None = None


def lookup(session: Session, delivery_id: int) -> DeliveryRef:
    """Resolve a delivery id from a token."""
    row = session.execute(
        select(
            Delivery.id,
            Delivery.edition_id,
            Edition.newsletter_id,
            Delivery.subscriber_id,
            Delivery.sent_at,
        )
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        raise UnknownDelivery(delivery_id)
    return DeliveryRef(*row)


def _event(session: Session, ref: DeliveryRef, kind: EventKind, **values: object) -> None:
    session.add(
        Event(
            kind=kind,
            delivery_id=ref.delivery_id,
            edition_id=ref.edition_id,
            newsletter_id=ref.newsletter_id,
            subscriber_id=ref.subscriber_id,
            **values,
        )
    )
    session.flush()


@dataclass(frozen=True)
class Pending:
    """A public-link event as the door saw it, waiting to be written with others.

    Only the client's network is kept, never its address, even in the buffer.
    """

    kind: EventKind
    delivery_id: int
    at: datetime  # when the request came, not when the batch is written
    method: str
    user_agent: str
    network: str | None
    link_index: int | None = None
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for a buffer outside the process)."""
        return {**asdict(self), "kind": self.kind.value, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pending:
        """The inverse of as_dict."""
        return cls(
            **{**data, "kind": EventKind(data["kind"]), "at": datetime.fromisoformat(data["at"])}
        )


def pending(
    kind: EventKind,
    delivery_id: int,
    seen: Seen,
    *,
    link_index: int | None = None,
    value: str | None = None,
    at: datetime | None = None,
) -> Pending:
    """What to write later about a request to a public link (no database access)."""
    return Pending(
        kind=kind,
        delivery_id=delivery_id,
        at=at or utcnow(),
        method=seen.method[:8],
        user_agent=seen.user_agent[:400],
        network=classify.client_network(seen.address),
        link_index=link_index,
        value=value,
    )


# Any constant key: one writer of public-link events at a time across every process.
_WRITE_LOCK = 0x4865_6264_6F45  # "HebdoE"


@dataclass
class Judged:
    """A batch ready to store: its rows with the verdicts of rules 1-7 and 9, and its fetches."""

    rows: list[dict[str, Any]]
    fetches: dict[int, list[classify.Fetch]]  # per delivery; new rows have negative ids


def judge(session: Session, batch: Sequence[Pending]) -> Judged:
    """Tie each event to its delivery and judge it (reads only; rule 8 waits for `store`).

    Events of deliveries that no longer exist are dropped.
    """
    refs = _lookup_many(session, {p.delivery_id for p in batch})
    rows: list[dict[str, Any]] = []
    fetches: dict[int, list[classify.Fetch]] = {}
    for p in batch:
        ref = refs.get(p.delivery_id)
        if ref is None:
            continue  # erased or never there: nothing to tie the event to
        after = (p.at - ref.sent_at).total_seconds() if ref.sent_at is not None else None
        verdict = classify.classify(
            classify.Facts(p.kind, p.method, p.user_agent, p.network, after)
        )
        target = classify.target_of(p.kind, p.link_index, p.value)
        if target is not None:  # new rows get negative ids: -1 is rows[0]
            fetches.setdefault(p.delivery_id, []).append(
                classify.Fetch(-1 - len(rows), target, p.at)
            )
        rows.append(
            {
                "kind": p.kind,
                "delivery_id": ref.delivery_id,
                "edition_id": ref.edition_id,
                "newsletter_id": ref.newsletter_id,
                "subscriber_id": ref.subscriber_id,
                "link_index": p.link_index,
                "value": p.value,
                "detail": {},
                "created_at": p.at,
                "method": p.method,
                "user_agent": p.user_agent,
                "network": p.network,
                "seconds_after": after,
                "actor": verdict.actor,
                "actor_rule": verdict.rule,
            }
        )
    return Judged(rows, fetches)


def store(session: Session, judged: Judged) -> int:
    """Apply the burst rule with what is stored, then write the rows; how many were written.

    One read of the deliveries' recent link fetches, one bulk INSERT and at most one
    UPDATE, whatever the batch's size. The burst rule (rule 8 of classify) sees the
    batch and what is stored together, so it holds however the events were grouped.
    """
    if not judged.rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        # Two processes writing at once would each miss the other's fetches in the
        # burst rule; SQLite's BEGIN IMMEDIATE already serialises writers.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK})
    rows = [dict(row) for row in judged.rows]
    fetches = {d: list(found) for d, found in judged.fetches.items()}
    stored_in_burst = _bursts(session, fetches, rows)
    # Core, not the ORM's bulk INSERT (which ran one statement per row here):
    # one executemany for the batch.
    session.execute(insert(cast(Table, Event.__table__)), rows)
    if stored_in_burst:
        session.execute(
            update(Event)
            .where(Event.id.in_(stored_in_burst))
            .values(actor=classify.BURST.actor, actor_rule=classify.BURST.rule)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    return len(rows)


def write(session: Session, batch: Sequence[Pending]) -> int:
    """Store a batch of public-link events with their evidence and verdict (judge + store)."""
    return store(session, judge(session, batch)) if batch else 0


def _lookup_many(session: Session, delivery_ids: set[int]) -> dict[int, DeliveryRef]:
    found: dict[int, DeliveryRef] = {}
    ordered = sorted(delivery_ids)
    for start in range(0, len(ordered), 500):
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.edition_id,
                Edition.newsletter_id,
                Delivery.subscriber_id,
                Delivery.sent_at,
            )
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Delivery.id.in_(ordered[start : start + 500]))
        ).all()
        found.update((row[0], DeliveryRef(*row)) for row in rows)
    return found


def _bursts(
    session: Session, fetches: dict[int, list[classify.Fetch]], rows: list[dict[str, Any]]
) -> set[int]:
    """Apply rule 8 to the new rows (in place); return the stored events it turns machine."""
    if not fetches:
        return set()
    since = min(f.at for found in fetches.values() for f in found) - timedelta(
        seconds=classify.BURST_SECONDS
    )
    ordered = sorted(fetches)
    for start in range(0, len(ordered), 500):
        stored = session.execute(
            select(
                Event.id, Event.delivery_id, Event.kind, Event.link_index, Event.value,
                Event.created_at,
            ).where(
                Event.delivery_id.in_(ordered[start : start + 500]),
                Event.kind.in_((EventKind.CLICK, EventKind.FEEDBACK)),
                Event.created_at >= since,
            )
        ).all()  # fmt: skip
        for row in stored:
            target = classify.target_of(row.kind, row.link_index, row.value)
            if target is not None and row.delivery_id is not None:
                fetches[row.delivery_id].append(classify.Fetch(row.id, target, row.created_at))
    stored_ids: set[int] = set()
    for found in fetches.values():
        for event_id in classify.in_bursts(found):
            if event_id < 0:
                rows[-1 - event_id].update(
                    actor=classify.BURST.actor, actor_rule=classify.BURST.rule
                )
            else:
                stored_ids.add(event_id)
    return stored_ids


# Built once: building the statement cost about a fifth of a click's CPU in-process.
_CLICK_TARGET = (
    select(Edition.id, Edition.tracked_links)
    .join(Delivery, Delivery.edition_id == Edition.id)
    .where(Delivery.id == bindparam("delivery_id"))
)


def click_target(session: Session, delivery_id: int, link_index: int) -> str:
    """The target of a delivery's tracked link (one read); UnknownDelivery if none."""
    row = session.execute(_CLICK_TARGET, {"delivery_id": delivery_id}).first()
    if row is None:
        raise UnknownDelivery(delivery_id)
    edition_id, links = row
    if links is None or not 0 <= link_index < len(links):
        raise UnknownDelivery(f"no link {link_index} in edition {edition_id}")
    return str(links[link_index])


def record_open(session: Session, delivery_id: int, seen: Seen | None = None) -> None:
    """The tracking pixel was loaded (written now; the web door batches instead)."""
    lookup(session, delivery_id)
    write(session, [pending(EventKind.OPEN, delivery_id, seen or Seen())])


def record_click(
    session: Session, delivery_id: int, link_index: int, seen: Seen | None = None
) -> str:
    """A tracked link was followed; return the target stored with the edition."""
    target = click_target(session, delivery_id, link_index)
    write(session, [pending(EventKind.CLICK, delivery_id, seen or Seen(), link_index=link_index)])
    return target


def record_feedback(
    session: Session, delivery_id: int, liked: bool, seen: Seen | None = None
) -> None:
    """The reader answered "did you like this?"; the last human answer counts."""
    lookup(session, delivery_id)
    write(session, [feedback(delivery_id, liked, seen or Seen())])


def feedback(delivery_id: int, liked: bool, seen: Seen) -> Pending:
    """The pending event of a feedback answer."""
    return pending(EventKind.FEEDBACK, delivery_id, seen, value="yes" if liked else "no")


def unsubscribe(session: Session, delivery_id: int, reason: str | None = None) -> bool:
    """Unsubscribe the delivery's reader from its newsletter (harmless twice)."""
    ref = lookup(session, delivery_id)
    if ref.subscriber_id is None:
        return False  # the reader erased themselves already
    subscription = session.scalar(
        select(Subscription).where(
            Subscription.newsletter_id == ref.newsletter_id,
            Subscription.subscriber_id == ref.subscriber_id,
        )
    )
    if subscription is None:
        return False
    changed = subscriptions.unsubscribe(session, subscription, reason=reason)
    if changed:
        _event(session, ref, EventKind.UNSUBSCRIBE, value=(reason or "")[:200] or None)
    return changed


def of_edition(
    session: Session,
    edition_id: int,
    *,
    before_id: int | None = None,
    kind: EventKind | None = None,
    limit: int = 100,
) -> list[Event]:
    """An edition's events, newest first; `before_id` pages further back (keyset)."""
    query = select(Event).where(Event.edition_id == edition_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if before_id is not None:
        query = query.where(Event.id < before_id)
    return list(session.scalars(query.order_by(Event.id.desc()).limit(limit)))
