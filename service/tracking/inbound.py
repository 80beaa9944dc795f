"""Mail that comes back: bounce reports, spam complaints and mailto unsubscribes.

Every message Hebdo sends names its delivery twice: in the VERP envelope sender
(`bounces+TOKEN@…`, where relays send delivery status reports and feedback loops
their complaints) and in the mailto of `List-Unsubscribe` (`unsubscribe+TOKEN@…`).
`process_message` reads one returned message, checks the token and applies what
it says. Anything it cannot tie to a delivery by a valid token changes nothing:
it is reported as "ignored", never as an error, so an MTA never bounces it back.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import tokens
from service.audience import subscriptions
from service.mail.mime import BOUNCE_PURPOSE, DELIVERY_PURPOSE, UNSUBSCRIBE_PURPOSE
from service.mail.transport import enhanced_status, mailbox_is_bad
from service.models import (
    Delivery,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
)
from service.numbers import int_or_none
from service.tracking import events

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "ignored"]

_HEADERS = ("Delivered-To", "X-Original-To", "To")  # where the address shows without an envelope


@dataclass(frozen=True)
class InboundResult:
    """What one returned message turned out to be, and what was done about it."""

    kind: Kind
    delivery_id: int | None
    detail: str


def process_message(
    session: Session, secret: str, raw: bytes, envelope_recipients: Sequence[str] = ()
) -> InboundResult:
    """Apply one returned message (bounce, complaint or unsubscribe) to its delivery."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    target = _target(message, envelope_recipients)
    if target is None:
        return InboundResult("ignored", None, "not addressed to bounces+ or unsubscribe+")
    prefix, token = target
    # The mailto takes the unsubscribe token (or the legacy delivery token of older mail).
    purposes = (BOUNCE_PURPOSE,) if prefix == "bounces" else (UNSUBSCRIBE_PURPOSE, DELIVERY_PURPOSE)
    try:
        (delivery_id,) = tokens.verify_any(secret, purposes, token, 1)
    except tokens.BadToken as exc:
        return InboundResult("ignored", None, f"{prefix}+ address with a bad token ({exc})")
    try:
        ref = events.lookup(session, delivery_id)
    except events.UnknownDelivery:
        return InboundResult("ignored", delivery_id, "no such delivery")
    if prefix == "unsubscribe":
        changed = events.unsubscribe(session, delivery_id, reason="mailto unsubscribe")
        return InboundResult(
            "unsubscribe", delivery_id, "unsubscribed" if changed else "already unsubscribed"
        )
    if _part(message, "message/feedback-report") is not None:
        feedback_type = _feedback_type(message)
        if feedback_type == "not-spam":  # RFC 6650: the opposite of a complaint
            return InboundResult("ignored", delivery_id, "feedback report: not-spam")
        return _complaint(session, ref, feedback_type)
    report = _part(message, "message/delivery-status")
    if report is None:
        # Auto-replies and bounces in free text: nothing reliable to act on.
        return InboundResult("ignored", delivery_id, "no delivery status report")
    return _bounce(session, ref, report)


def _target(message: Message, envelope_recipients: Sequence[str]) -> tuple[str, str] | None:
    """The (prefix, token) of the first bounces+/unsubscribe+ address the message was sent to."""
    candidates = list(envelope_recipients)
    if not candidates:
        for name in _HEADERS:
            values = [str(value) for value in message.get_all(name, [])]
            candidates += [address for _, address in getaddresses(values)]
    for address in candidates:
        local = address.strip().strip("<>").rpartition("@")[0]
        prefix, plus, token = local.partition("+")
        if plus and token and prefix.lower() in ("bounces", "unsubscribe"):
            return prefix.lower(), token
    return None


def _part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _recipient_fields(report: Message) -> Iterator[Message]:
    """The per-recipient field groups of a message/delivery-status part (RFC 3464 2.3)."""
    payload = report.get_payload()
    # The email package parses each blank-line-separated group as a Message;
    # the first group describes the message, the others one recipient each.
    groups = payload[1:] if isinstance(payload, list) else []
    yield from (g for g in groups if isinstance(g, Message) and g.get("Action"))


def bounce_kind(
    action: str, status_text: str, diagnostic: str
) -> Literal["hard_bounce", "soft_bounce"]:
    """hard_bounce or soft_bounce for one failed recipient, by the rule of the RCPT refusal.

    Hard only for a permanent failure (action "failed", status 5.x.x) that says the
    mailbox is bad (service.mail.transport.mailbox_is_bad); everything else is soft.
    Shared by the reports read from mail and those relays post to webhooks.
    """
    status = enhanced_status(status_text.strip()) or enhanced_status(diagnostic.strip())
    reply = diagnostic.partition(";")[2].strip() or diagnostic.strip()
    code = int_or_none(reply.split(" ", 1)[0], maximum=999)
    if status is None and code is not None and code >= 500:
        status = enhanced_status(reply)
    if (
        action == "failed"
        and status is not None
        and status[0] == 5
        and mailbox_is_bad(status, code)
    ):
        return "hard_bounce"
    return "soft_bounce"


def record_failure(
    session: Session,
    ref: events.DeliveryRef,
    kind: Literal["hard_bounce", "soft_bounce"],
    detail: str,
    source_key: str | None,
) -> InboundResult:
    """Record a hard or soft bounce of a delivery (a hard one suppresses the address)."""
    if kind == "hard_bounce":
        email_address = session.scalar(select(Delivery.email).where(Delivery.id == ref.delivery_id))
        assert email_address is not None  # lookup() found the row
        subscriptions.record_hard_bounce(
            session, email_address, detail, delivery_id=ref.delivery_id, source_key=source_key
        )
        return InboundResult("hard_bounce", ref.delivery_id, detail)
    _event(session, ref, EventKind.BOUNCE, "soft", detail, source_key)
    return InboundResult("soft_bounce", ref.delivery_id, detail)


def record_complaint(
    session: Session, ref: events.DeliveryRef, feedback_type: str, source_key: str | None
) -> InboundResult:
    """A spam complaint about a delivery: the reader is suppressed everywhere."""
    return _complaint(session, ref, feedback_type, source_key)


def _bounce(session: Session, ref: events.DeliveryRef, report: Message) -> InboundResult:
    soft: str | None = None
    for fields in _recipient_fields(report):
        action = str(fields.get("Action", "")).strip().lower()
        status_text = str(fields.get("Status", "")).strip()
        diagnostic = " ".join(str(fields.get("Diagnostic-Code", "")).split())
        detail = f"{status_text} {diagnostic}".strip()
        if bounce_kind(action, status_text, diagnostic) == "hard_bounce":
            return record_failure(session, ref, "hard_bounce", detail, None)
        if action in ("failed", "delayed") and soft is None:
            soft = detail or action
    if soft is None:
        return InboundResult("ignored", ref.delivery_id, "the report shows no failure")
    return record_failure(session, ref, "soft_bounce", soft, None)


def _feedback_type(message: Message) -> str:
    part = _part(message, "message/feedback-report")
    payload = part.get_payload() if part is not None else None
    # Parsed as a message/* part: its fields are the headers of the one sub-message.
    fields = payload[0] if isinstance(payload, list) and payload else None
    value = fields.get("Feedback-Type") if isinstance(fields, Message) else None
    return str(value or "abuse").strip().lower()


def _complaint(
    session: Session, ref: events.DeliveryRef, feedback_type: str, source_key: str | None = None
) -> InboundResult:
    email_address = session.scalar(select(Delivery.email).where(Delivery.id == ref.delivery_id))
    assert email_address is not None  # lookup() found the row
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email_address))
    if subscriber is not None:
        subscriber.status = SubscriberStatus.COMPLAINED
        subscriptions.emit_to_newsletters_of(session, subscriber, "complained")
    detail = f"feedback report: {feedback_type}"
    subscriptions.suppress(session, email_address, SuppressionReason.COMPLAINT, detail=detail)
    _event(session, ref, EventKind.COMPLAINT, feedback_type[:200], detail, source_key)
    return InboundResult("complaint", ref.delivery_id, detail)


def _event(
    session: Session,
    ref: events.DeliveryRef,
    kind: EventKind,
    value: str,
    detail: str,
    source_key: str | None = None,
) -> None:
    session.add(
        Event(
            kind=kind,
            delivery_id=ref.delivery_id,
            edition_id=ref.edition_id,
            newsletter_id=ref.newsletter_id,
            subscriber_id=ref.subscriber_id,
            value=value,
            detail={"report": detail[:500]},
            source_key=source_key,
        )
    )
    session.flush()
