"""Signup with double opt-in: request, confirmation message, confirmation link.

A signup only ever records a *pending* subscription and mails the address a
signed link; nothing is delivered until that link is used, so a form post can
never subscribe someone else. What the caller tells the visitor must not depend
on the address's state (new, pending, confirmed, unsubscribed, suppressed): the
result of `request` is for the sending step only, never for the response.

Transactional messages are rendered from templates/email/<notice>/ and sent
one at a time through the transport the caller hands in, after its commit.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from service import tokens, translations
from service.access import webhooks
from service.addresses import normalise
from service.audience import subscriptions, suppressions
from service.config import Settings
from service.mail import links, notices
from service.mail.notices import Notice
from service.mail.transport import DeliveryError, Transport
from service.models import (
    Newsletter,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.text import person_name

log = logging.getLogger(__name__)

CONFIRM_PURPOSE = "confirm"  # the token in a confirmation link: (subscription id, issued at)
PREFS_PURPOSE = "prefs"  # a subscriber-scoped preference-centre token, for notices
# Links mailed on request from the preference centre: (subscriber id, address tag, issued at).
EXPORT_PURPOSE = "export"  # downloads everything held about the reader
ERASE_PURPOSE = "erase"  # opens the page that erases the reader
CONFIRM_MAX_AGE = timedelta(days=7)
DATA_LINK_MAX_AGE = timedelta(hours=24)
RESEND_AFTER = timedelta(minutes=5)
SIGNUPS_PER_IP_PER_HOUR = 10
LANGUAGES = ("fr", "en")

# A confirmation lifts these; a manual suppression is an editor's decision and stays.
_LIFTED_BY_CONFIRMATION = (
    SuppressionReason.UNSUBSCRIBE,
    SuppressionReason.HARD_BOUNCE,
    SuppressionReason.COMPLAINT,
    SuppressionReason.ERASED,
)


# The notices that answer a signup: they take the subscription's resend slot.
_SIGNUP_NOTICES = (Notice.CONFIRM, Notice.ALREADY_SUBSCRIBED)
# The notices that carry a link to the reader's data, and that link's purpose.
DATA_NOTICES = {Notice.DATA_EXPORT: EXPORT_PURPOSE, Notice.DATA_ERASE: ERASE_PURPOSE}


@dataclass(frozen=True)
class SignupResult:
    """What a signup request calls for after commit (never shown to the visitor)."""

    subscription_id: int
    notice: Notice | None  # None: nothing to send (sent a moment ago, or blocked)


class BadLink(ValueError):
    """A confirmation link that is forged, malformed or for a vanished subscription."""


class LinkExpired(BadLink):
    """A genuine confirmation link that is too old, or older than a later unsubscribe."""


def confirmation_token(secret: str, subscription_id: int, now: datetime | None = None) -> str:
    """A confirmation token, in the format of tokens.sign_expiring (id, issue time)."""
    issued = int((now or utcnow()).timestamp())
    return tokens.sign(secret, CONFIRM_PURPOSE, subscription_id, issued)


def preferences_token(secret: str, subscriber_id: int, email: str) -> str:
    """A preference-centre token naming the subscriber (for links outside an edition).

    The address is bound in (address_tag), as in data links: the link outlives neither a
    change of address nor an erasure whose id a later signup takes again.
    """
    return tokens.sign(secret, PREFS_PURPOSE, subscriber_id, address_tag(email))


def address_tag(email: str) -> int:
    """64 bits of the address's digest: a data link works only while the address is the same.

    A data link names a subscriber id; with the address bound in, a link outlives
    neither a change of address nor the erasure of the person whose id a later
    signup may take again.
    """
    return int.from_bytes(hashlib.sha256(email.encode()).digest()[:8], "big")


def data_link_token(
    secret: str, purpose: str, subscriber_id: int, email: str, issued: int | None = None
) -> str:
    """A link to the reader's data (EXPORT_PURPOSE or ERASE_PURPOSE), valid DATA_LINK_MAX_AGE.

    `issued` (epoch seconds) is for tests; links are minted with the current time.
    """
    tag = address_tag(email)
    if issued is None:
        return tokens.sign_expiring(secret, purpose, subscriber_id, tag)
    return tokens.sign(secret, purpose, subscriber_id, tag, issued)


def _is_suppressed(
    session: Session, email: str, newsletter_id: int, reasons: tuple[SuppressionReason, ...]
) -> bool:
    # The address's own entry or its whole domain's (an editor's, by hand).
    return suppressions.is_suppressed(session, email, newsletter_id, reasons)


def receives(session: Session, subscription: Subscription) -> bool:
    """Whether editions reach this subscription now (confirmed, active, not suppressed)."""
    subscriber = subscription.subscriber
    return (
        subscription.status == SubscriptionStatus.CONFIRMED
        and subscriber.status == SubscriberStatus.ACTIVE
        and not _is_suppressed(
            session, subscriber.email, subscription.newsletter_id, tuple(SuppressionReason)
        )
    )


def notice_slot_free(now: datetime) -> ColumnElement[bool]:
    """The resend rule as SQL: this subscription was not mailed within RESEND_AFTER."""
    return or_(
        Subscription.confirmation_sent_at.is_(None),
        Subscription.confirmation_sent_at <= now - RESEND_AFTER,
    )


def claim_notice_slot(session: Session, subscription_id: int, now: datetime | None = None) -> bool:
    """Take the right to mail this subscription now: at most once per RESEND_AFTER.

    One conditional UPDATE, so two concurrent requests cannot both win.
    """
    now = now or utcnow()
    result = session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, notice_slot_free(now))
        .values(confirmation_sent_at=now)
        .execution_options(synchronize_session="fetch")
    )
    assert isinstance(result, CursorResult)  # DML results carry a row count
    return result.rowcount == 1


def request(
    session: Session,
    newsletter: Newsletter,
    *,
    email: str,
    name: str = "",
    locale: str | None = None,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> SignupResult:
    """Ask for a newsletter: record the pending consent and say which notice to send.

    Raises service.addresses.InvalidAddress for an address that cannot be mailed
    and service.text.UnusableText for a name that cannot be kept (a NUL), before
    writing anything.
    """
    now = now or utcnow()
    address = normalise(email)
    clean_name = person_name(name)
    language = locale if locale in LANGUAGES else newsletter.language
    # An anonymous form must not rewrite an existing person's data (name, language):
    # only a new subscriber takes them from the form.
    subscriber = subscriptions.find_or_create_subscriber(
        session, address, clean_name, locale=language
    )
    subscription = session.scalar(
        select(Subscription).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.subscriber_id == subscriber.id,
        )
    )
    notice: Notice | None = Notice.CONFIRM
    if subscription is not None and receives(session, subscription):
        notice = Notice.ALREADY_SUBSCRIBED
    elif _is_suppressed(session, address, newsletter.id, (SuppressionReason.MANUAL,)):
        notice = None
    if subscription is None or subscription.status != SubscriptionStatus.CONFIRMED:
        # A pending or former subscription takes the newest consent record; a
        # confirmed one keeps the consent it was confirmed with.
        subscription = subscriptions.subscribe(
            session,
            newsletter,
            subscriber,
            confirmed=False,
            source=source,
            ip=ip,
            user_agent=user_agent,
            now=now,
        )
    if notice is not None and not claim_notice_slot(session, subscription.id, now):
        notice = None
    session.flush()
    return SignupResult(subscription.id, notice)


def verify_link(
    session: Session, secret: str, token: str, *, now: datetime | None = None
) -> Subscription:
    """The subscription a confirmation token names; BadLink or LinkExpired otherwise."""
    now = now or utcnow()
    try:
        subscription_id, issued = tokens.verify(secret, CONFIRM_PURPOSE, token, 2)
    except tokens.BadToken as exc:
        raise BadLink(str(exc)) from exc
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        raise BadLink("no such subscription")  # the reader erased themselves meanwhile
    if now.timestamp() - issued > CONFIRM_MAX_AGE.total_seconds():
        raise LinkExpired("link expired")
    # A link mailed before the reader unsubscribed must not bring them back.
    left = subscription.unsubscribed_at
    if left is not None and issued < int(left.timestamp()):
        raise LinkExpired("link older than the last unsubscribe")
    return subscription


def confirm(session: Session, subscription: Subscription, *, now: datetime | None = None) -> bool:
    """Confirm a subscription (harmless twice); returns False if it already was.

    Confirming proves the reader wants the letter and that the address works
    again, so it lifts their unsubscribe, bounce and complaint suppressions.
    """
    now = now or utcnow()
    subscriber = subscription.subscriber
    session.execute(
        delete(Suppression)
        .where(
            Suppression.email.in_(
                [subscriber.email, subscriptions.erased_marker(subscriber.email)]
            ),
            or_(
                Suppression.newsletter_id.is_(None),
                Suppression.newsletter_id == subscription.newsletter_id,
            ),
            Suppression.reason.in_(_LIFTED_BY_CONFIRMATION),
        )
        .execution_options(synchronize_session=False)
    )
    if subscriber.status != SubscriberStatus.ACTIVE:
        subscriber.status = SubscriberStatus.ACTIVE
    changed = subscription.status != SubscriptionStatus.CONFIRMED
    if changed:
        subscription.status = SubscriptionStatus.CONFIRMED
        subscription.confirmed_at = now
    session.flush()
    if changed:
        webhooks.emit(
            session,
            subscription.newsletter_id,
            "confirmed",
            [webhooks.subscriber_item(subscriber.id, subscriber.email)],
            now=now,
        )
    return changed


def notice_context(
    subscription: Subscription,
    settings: Settings,
    now: datetime | None = None,
    notice: Notice | None = None,
) -> dict[str, Any]:
    """The template context of a notice about this subscription."""
    newsletter, subscriber = subscription.newsletter, subscription.subscriber
    base = settings.base_url
    # A notice speaks to one reader: in the language they chose (the edition itself
    # keeps its newsletter's).
    lang = translations.language_of(subscriber.locale) or newsletter.language
    _ = translations.translator(lang)
    urls = {
        "confirm": links.url(
            base,
            "confirm",
            slug=newsletter.slug,
            token=confirmation_token(settings.secret_key, subscription.id, now),
        ),
        "preferences": links.url(
            base,
            "preferences",
            token=preferences_token(settings.secret_key, subscriber.id, subscriber.email),
        ),
        "signup": links.url(base, "subscribe", slug=newsletter.slug),
    }
    purpose = DATA_NOTICES.get(notice) if notice is not None else None
    if purpose is not None:  # only the notice that carries a data link gets one minted
        issued = int(now.timestamp()) if now is not None else None
        token = data_link_token(
            settings.secret_key, purpose, subscriber.id, subscriber.email, issued
        )
        route = "data_export" if purpose == EXPORT_PURPOSE else "data_erase"
        urls["data"] = links.url(base, route, token=token)
    return {
        "lang": lang,
        "_": _,
        "ngettext": _.ngettext,
        "newsletter": {
            "name": newsletter.name,
            "sender_name": newsletter.sender_name,
            "postal_address": newsletter.postal_address,
        },
        "subscriber": {"name": subscriber.name, "email": subscriber.email},
        "urls": urls,
        "expires_days": CONFIRM_MAX_AGE.days,
        "data_link_hours": int(DATA_LINK_MAX_AGE.total_seconds() // 3600),
    }


def build_message(
    subscription: Subscription, notice: Notice, settings: Settings, now: datetime | None = None
) -> EmailMessage:
    """The notice as a multipart/alternative message to the subscriber."""
    now = now or utcnow()
    newsletter, subscriber = subscription.newsletter, subscription.subscriber
    rendered = notices.render(
        settings.email_templates_path, notice, notice_context(subscription, settings, now, notice)
    )
    return notices.build(
        rendered,
        sender=notices.Party(newsletter.sender_name, newsletter.sender_email),
        recipient=notices.Party(subscriber.name, subscriber.email),
        reply_to=newsletter.reply_to,
        now=now,
    )


def send_notice(
    session: Session,
    subscription: Subscription,
    notice: Notice,
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
) -> bool:
    """Mail a notice now; on failure log it and free the resend slot (the reader may retry).

    The signup itself is already committed by the caller, so a relay outage
    loses nothing: the reader asks again and gets a new link. Only the notices
    that answer a signup take or free the resend slot; a data link is limited
    by the preference centre (service.audience.preferences.request_data_link).
    """
    now = now or utcnow()
    try:
        message = build_message(subscription, notice, settings, now)
        transport.send(
            subscription.newsletter.sender_email,
            subscription.subscriber.email,
            notices.as_bytes(message, subscription.subscriber.email),
        )
    except (DeliveryError, ValueError) as exc:  # ValueError: data stored before the text rule
        log.warning("%s for subscription %s not sent: %s", notice.value, subscription.id, exc)
        if notice in _SIGNUP_NOTICES:
            subscription.confirmation_sent_at = None
            session.flush()
        return False
    if notice in _SIGNUP_NOTICES:
        subscription.confirmation_sent_at = now
        session.flush()
    return True


def send_confirmation(
    session: Session,
    subscription: Subscription,
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
) -> bool:
    """Mail the confirmation link of a pending subscription (see send_notice)."""
    return send_notice(session, subscription, Notice.CONFIRM, settings, transport, now=now)
