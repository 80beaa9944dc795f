"""Outgoing webhooks: what happens to a newsletter, POSTed to the URLs an admin configured.

Each event becomes one `webhook_delivery` row per endpoint that wants it, in the same
transaction as the change it reports (the outbox): a rolled-back change sends nothing,
a committed one is delivered even if a worker dies. The workers claim due rows (a
lease, like the edition outbox), POST them signed with the Standard Webhooks scheme
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`, secret `whsec_<base64>`), and retry failures with growing
delays for a day before giving up. Every attempt's outcome stays on the row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import (
    Newsletter,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
    utcnow,
)
from service.team import audit
from service.text import one_line

EVENTS = (
    "subscribed",
    "confirmed",
    "unsubscribed",
    "bounced",
    "complained",
    "edition.started",
    "edition.sent",
)
# Standard Webhooks' suggested schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
GIVE_UP_AFTER = timedelta(days=1)
LEASE = timedelta(seconds=60)  # a claimed row is claimed again after this (a dead worker)
TIMEOUT_SECONDS = 10.0
URL_MAX = 1000


class BadWebhook(ValueError):
    """The endpoint cannot be configured as asked; the message says why."""


@dataclass(frozen=True)
class Attempt:
    """What one POST got: the HTTP status (None when no answer) and an error text."""

    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Post = Callable[[str, bytes, Mapping[str, str]], Attempt]


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


# --- configuration ------------------------------------------------------------------


def parse_events(values: Iterable[str]) -> list[str]:
    """Event names from their names (comma lists allowed), or BadWebhook."""
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower().replace("_", ".")
            if not name:
                continue
            if name not in EVENTS:
                raise BadWebhook(f"unknown event {name[:40]!r} ({', '.join(EVENTS)})")
            if name not in found:
                found.append(name)
    if not found:
        raise BadWebhook(f"name at least one event: {', '.join(EVENTS)}")
    return found


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: whsec_ and 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add_endpoint(
    session: Session,
    newsletter: Newsletter,
    url: str,
    events: Iterable[str],
    *,
    actor: audit.Who,
) -> WebhookEndpoint:
    """Configure a URL to be called on these events of the newsletter."""
    clean = one_line(url, limit=URL_MAX + 1, field="url")
    if len(clean) > URL_MAX or not clean.lower().startswith(("http://", "https://")):
        raise BadWebhook(f"the URL must start with http:// or https:// (at most {URL_MAX} chars)")
    endpoint = WebhookEndpoint(
        newsletter_id=newsletter.id, url=clean, events=parse_events(events), secret=new_secret()
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor,
        "webhook.add",
        object_type="webhook_endpoint",
        object_id=endpoint.id,
        detail={"newsletter": newsletter.slug, "url": clean, "events": endpoint.events},
    )
    return endpoint


def endpoints(session: Session) -> list[WebhookEndpoint]:
    """Every configured endpoint."""
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def deliveries(
    session: Session, *, endpoint_id: int | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    """The newest deliveries first, with their attempts so far."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(session.scalars(query))


# --- events ---------------------------------------------------------------------------


def emit(
    session: Session,
    newsletter_id: int,
    event_type: str,
    items: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> int:
    """Owe one delivery per item to each endpoint of the newsletter that wants this event.

    Costs one query when nobody listens. Flushes only: the rows commit with the change.
    """
    wanted = [
        endpoint
        for endpoint in session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.newsletter_id == newsletter_id,
                WebhookEndpoint.is_disabled.is_(False),
            )
        )
        if event_type in endpoint.events
    ]
    if not wanted:
        return 0
    now = now or utcnow()
    slug = session.scalar(select(Newsletter.slug).where(Newsletter.id == newsletter_id))
    rows = [
        WebhookDelivery(
            endpoint_id=endpoint.id,
            message_id="msg_" + secrets.token_hex(12),
            event_type=event_type,
            payload={
                "type": event_type,
                "timestamp": now.isoformat(),
                "data": {"newsletter": slug, **item},
            },
            next_attempt_at=now,
        )
        for item in items
        for endpoint in wanted
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def subscriber_item(subscriber_id: int | None, email: str) -> dict[str, Any]:
    """The data of a subscriber event."""
    return {"subscriber": {"id": subscriber_id, "email": email}}


def edition_item(edition_id: int, number: int, title: str) -> dict[str, Any]:
    """The data of an edition event."""
    return {"edition": {"id": edition_id, "number": number, "title": title}}


# --- signing and sending ------------------------------------------------------------


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes POSTed (and signed)."""
    return json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value: v1,<base64 HMAC-SHA256>."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer of its own (3xx), never followed with the body


_OPENER = urllib.request.build_opener(_NoRedirects)


def http_post(url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
    """POST over HTTP(S) with a timeout; the status, or why there was none."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - http(s) only, checked when configured
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            return Attempt(int(response.status))
    except urllib.error.HTTPError as exc:
        return Attempt(exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Attempt(None, str(getattr(exc, "reason", exc))[:500])


def _claim(factory: sessionmaker[Session], now: datetime, limit: int) -> list[int]:
    with factory() as session, session.begin():
        rows = list(
            session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == WebhookStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        for row in rows:
            row.next_attempt_at = now + LEASE
        return [row.id for row in rows]


def deliver_due(
    factory: sessionmaker[Session],
    *,
    now: datetime | None = None,
    post: Post = http_post,
    limit: int = 100,
) -> DeliveryReport:
    """POST the due deliveries, each in its own short transaction; retry or give up."""
    now = now or utcnow()
    report = DeliveryReport()
    for delivery_id in _claim(factory, now, limit):
        with factory() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != WebhookStatus.PENDING:
                continue
            endpoint = delivery.endpoint
            body = body_of(delivery)
            stamp = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Hebdo-Webhooks/1",
                "webhook-id": delivery.message_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(endpoint.secret, delivery.message_id, stamp, body),
            }
            url = endpoint.url
            session.rollback()  # no transaction stays open during the POST
        attempt = post(url, body, headers)
        with factory() as session, session.begin():
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                continue
            _record(delivery, attempt, now)
            if delivery.status == WebhookStatus.DELIVERED:
                report.delivered += 1
            elif delivery.status == WebhookStatus.FAILED:
                report.failed += 1
            else:
                report.retried += 1
    return report


def _record(delivery: WebhookDelivery, attempt: Attempt, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = attempt.status
    delivery.last_error = attempt.error[:500]
    if attempt.ok:
        delivery.status = WebhookStatus.DELIVERED
        delivery.delivered_at = now
        return
    index = delivery.attempts - 1
    if index >= len(RETRY_DELAYS) or now - delivery.created_at >= GIVE_UP_AFTER:
        delivery.status = WebhookStatus.FAILED
        return
    delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[index])
