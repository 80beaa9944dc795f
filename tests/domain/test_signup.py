"""Signup with double opt-in and the DB rate limiter, on SQLite and on PostgreSQL.

Messages go through the real SMTP transport to the recording SMTP server.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from typing import cast
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import ratelimit, tokens
from service.addresses import InvalidAddress
from service.audience import signup, subscriptions
from service.config import Settings
from service.mail import notices
from service.mail.transport import SmtpTransport
from service.models import (
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.sending import outbox
from tests import factories
from tests.support.smtp import RecordingSmtpServer

ADDRESS = "Camille.Roux@Exemple.fr"
NORMALISED = "camille.roux@exemple.fr"


def _ask(
    session: Session, letter: Newsletter, email: str = ADDRESS, **kw: object
) -> signup.SignupResult:
    values: dict[str, object] = {
        "name": "Camille",
        "source": "form:/n/lettre/subscribe",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (test)",
    }
    values.update(kw)
    return signup.request(session, letter, email=email, **values)  # type: ignore[arg-type]


def _send(session: Session, settings: Settings, result: signup.SignupResult, **kw: object) -> bool:
    subscription = session.get(Subscription, result.subscription_id)
    assert subscription is not None
    assert result.notice is not None
    with SmtpTransport(settings.smtp_relays) as transport:
        return signup.send_notice(
            session,
            subscription,
            result.notice,
            settings,
            transport,
            **kw,  # type: ignore[arg-type]
        )


def _links(message: EmailMessage) -> list[str]:
    text = message.get_body(("plain",))
    assert text is not None
    return re.findall(r"https?://\S+", text.get_content())


def _subscription(session: Session, email: str = NORMALISED) -> Subscription:
    found = session.scalar(select(Subscription).join(Subscriber).where(Subscriber.email == email))
    assert found is not None
    return found


def test_signup_records_pending_consent_and_mails_a_signed_link(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    session.commit()
    assert result.notice is notices.Notice.CONFIRM

    subscription = _subscription(session)
    assert subscription.status is SubscriptionStatus.PENDING
    assert subscription.consent_ip == "203.0.113.7"
    assert subscription.consent_user_agent == "Mozilla/5.0 (test)"
    assert subscription.consent_source == "form:/n/lettre/subscribe"
    assert subscription.consent_at is not None
    assert subscription.subscriber.name == "Camille"

    assert _send(session, settings, result)
    session.commit()
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == (NORMALISED,)
    message = received.parsed()
    assert message["Subject"] == "Confirmez votre abonnement à Intelligence & Société"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    (link,) = [u for u in _links(message) if "/confirm/" in u]
    html = message.get_body(("html",))
    assert html is not None
    assert link in html.get_content()
    assert link.startswith(f"{settings.base_url}/n/lettre/confirm/")
    token = urlsplit(link).path.rsplit("/", 1)[1]
    assert signup.verify_link(session, settings.secret_key, token).id == subscription.id
    assert subscription.confirmation_sent_at is not None


def test_english_newsletter_sends_an_english_confirmation(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session, slug="weekly", language="en")
    result = _ask(session, letter, name="")
    session.commit()
    assert _send(session, settings, result)
    message = smtp_server.wait_for(1)[0].parsed()
    assert message["Subject"] == "Please confirm your subscription to AI Weekly"
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines()[0] == "Hello,"


def test_the_readers_chosen_language_picks_the_language_of_the_notices(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)  # a French newsletter
    result = _ask(session, letter, locale="en")
    session.commit()
    assert _send(session, settings, result)
    message = smtp_server.wait_for(1)[0].parsed()
    assert message["Subject"] == "Please confirm your subscription to Intelligence & Société"
    text = message.get_body(("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    assert lines[0] == "Hello Camille,"
    assert "The link is valid for 7 days." in lines
    html = message.get_body(("html",))
    assert html is not None
    assert '<html lang="en">' in html.get_content()

    smtp_server.clear()
    subscription = _subscription(session)
    signup.confirm(session, subscription)
    session.commit()
    later = utcnow() + signup.RESEND_AFTER
    # A form cannot change a known reader's language: the notice stays in English.
    again = _ask(session, letter, locale="fr", now=later)
    session.commit()
    assert again.notice is notices.Notice.ALREADY_SUBSCRIBED
    assert _send(session, settings, again)
    notice = smtp_server.wait_for(1)[0].parsed()
    assert notice["Subject"] == "You already receive Intelligence & Société"


def test_confirming_twice_is_harmless(backend: str, session: Session, settings: Settings) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    token = signup.confirmation_token(settings.secret_key, result.subscription_id)
    subscription = signup.verify_link(session, settings.secret_key, token)
    assert signup.confirm(session, subscription) is True
    first = subscription.confirmed_at
    session.commit()

    again = signup.verify_link(session, settings.secret_key, token)
    assert signup.confirm(session, again) is False
    session.commit()
    assert again.status is SubscriptionStatus.CONFIRMED
    assert again.confirmed_at == first


def test_expired_forged_and_foreign_links_are_refused(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    old = signup.confirmation_token(
        settings.secret_key, result.subscription_id, utcnow() - timedelta(days=7, minutes=1)
    )
    with pytest.raises(signup.LinkExpired):
        signup.verify_link(session, settings.secret_key, old)

    fresh = signup.confirmation_token(settings.secret_key, result.subscription_id)
    forged = fresh[:-2] + ("AA" if fresh[-2:] != "AA" else "BB")
    with pytest.raises(signup.BadLink):
        signup.verify_link(session, settings.secret_key, forged)
    with pytest.raises(signup.BadLink):
        signup.verify_link(session, "another-secret", fresh)
    # A token minted for another purpose (here: a preference link) never confirms.
    prefs = tokens.sign(settings.secret_key, signup.PREFS_PURPOSE, result.subscription_id, 1)
    with pytest.raises(signup.BadLink):
        signup.verify_link(session, settings.secret_key, prefs)
    assert _subscription(session).status is SubscriptionStatus.PENDING


def test_a_link_mailed_before_an_unsubscribe_cannot_bring_the_reader_back(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    before = signup.confirmation_token(
        settings.secret_key, result.subscription_id, utcnow() - timedelta(hours=1)
    )
    subscription = _subscription(session)
    signup.confirm(session, subscription)
    subscriptions.unsubscribe(session, subscription)
    session.commit()
    with pytest.raises(signup.LinkExpired):
        signup.verify_link(session, settings.secret_key, before)


def test_signing_up_again_while_pending_resends_at_most_every_five_minutes(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)
    start = utcnow()
    first = _ask(session, letter, now=start)
    session.commit()
    assert _send(session, settings, first, now=start)
    session.commit()

    soon = _ask(session, letter, now=start + timedelta(minutes=4, seconds=59))
    assert soon.notice is None
    later = _ask(session, letter, now=start + timedelta(minutes=5, seconds=1))
    assert later.notice is notices.Notice.CONFIRM
    assert later.subscription_id == first.subscription_id
    session.commit()
    assert _send(session, settings, later, now=start + timedelta(minutes=5, seconds=1))
    assert len(smtp_server.wait_for(2)) == 2
    count = session.scalar(select(Subscription.id).where(Subscription.id != first.subscription_id))
    assert count is None  # still one subscription, one subscriber


def test_a_confirmed_reader_signing_up_again_changes_nothing_and_gets_a_notice(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    subscription = _subscription(session)
    signup.confirm(session, subscription)
    consent_before = (subscription.consent_at, subscription.consent_ip)
    session.commit()

    later = utcnow() + signup.RESEND_AFTER
    again = _ask(session, letter, name="Quelqu'un d'autre", ip="198.51.100.9", now=later)
    session.commit()
    assert again.notice is notices.Notice.ALREADY_SUBSCRIBED
    assert subscription.status is SubscriptionStatus.CONFIRMED
    assert (subscription.consent_at, subscription.consent_ip) == consent_before
    assert subscription.subscriber.name == "Camille"  # a form never renames someone
    assert _send(session, settings, again)
    message = smtp_server.wait_for(1)[0].parsed()
    assert message["Subject"] == "Vous recevez déjà Intelligence & Société"
    (link,) = [u for u in _links(message) if "/p/" in u]
    token = urlsplit(link).path.rsplit("/", 1)[1]
    prefs = tokens.verify(settings.secret_key, signup.PREFS_PURPOSE, token, 2)
    assert prefs == (subscription.subscriber_id, signup.address_tag(subscription.subscriber.email))
    assert result.subscription_id == again.subscription_id


def test_confirming_lifts_the_unsubscribe_and_the_hard_bounce_suppressions(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    (reader,) = factories.readers(session, letter, 1)
    subscription = _subscription(session, reader.email)
    subscriptions.unsubscribe(session, subscription, reason="trop de courriels")
    subscriptions.record_hard_bounce(session, reader.email, "550 5.1.1 mailbox unknown")
    session.commit()
    reasons = set(session.scalars(select(Suppression.reason)))
    assert reasons == {SuppressionReason.UNSUBSCRIBE, SuppressionReason.HARD_BOUNCE}

    result = _ask(session, letter, email=reader.email)
    assert result.notice is notices.Notice.CONFIRM
    assert subscription.status is SubscriptionStatus.PENDING
    session.commit()
    token = signup.confirmation_token(settings.secret_key, result.subscription_id)
    signup.confirm(session, signup.verify_link(session, settings.secret_key, token))
    session.commit()

    # The cast widens what mypy still holds from the assert above; confirm changed the row.
    assert cast(SubscriptionStatus, subscription.status) is SubscriptionStatus.CONFIRMED
    assert reader.status is SubscriberStatus.ACTIVE
    assert session.scalar(select(Suppression.id)) is None
    edition = factories.edition(session, letter)
    recipients = session.execute(outbox.recipients_query(edition, utcnow())).all()
    assert [r.email for r in recipients] == [reader.email]
    session.rollback()


def test_a_manually_suppressed_address_gets_no_mail(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    subscriptions.suppress(session, NORMALISED, SuppressionReason.MANUAL, detail="demande écrite")
    assert _ask(session, letter).notice is None


def test_an_invalid_address_is_refused_without_a_trace(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    with pytest.raises(InvalidAddress):
        _ask(session, letter, email="pas-une-adresse@")
    assert session.scalar(select(Subscriber.id)) is None


def test_a_relay_outage_keeps_the_signup_and_frees_the_resend_slot(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)
    result = _ask(session, letter)
    session.commit()
    smtp_server.refuse_connections()
    assert _send(session, settings, result) is False
    session.commit()
    subscription = _subscription(session)
    assert subscription.status is SubscriptionStatus.PENDING
    assert subscription.confirmation_sent_at is None
    smtp_server.accept_connections()
    assert _ask(session, letter).notice is notices.Notice.CONFIRM


def test_rate_limit_allows_the_limit_per_window_then_refuses(
    backend: str, session: Session
) -> None:
    now = 1_700_000_000.0
    start = ratelimit.window_start(3600, now)
    hits = [ratelimit.hit(session, "signup:ip:203.0.113.7", 3600, 3, now=now) for _ in range(5)]
    assert hits == [True, True, True, False, False]
    assert ratelimit.hit(session, "signup:ip:198.51.100.1", 3600, 3, now=now)  # other key
    assert ratelimit.hit(session, "signup:ip:203.0.113.7", 3600, 3, now=start + 3600)
    session.commit()
    assert ratelimit.hit(session, "bulk", 60, 10, cost=10, now=now)
    assert not ratelimit.hit(session, "bulk", 60, 10, now=now)
    assert ratelimit.purge(session, 3600, now=start + 7200) >= 2
    session.commit()


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("notice", [notices.Notice.DATA_EXPORT, notices.Notice.DATA_ERASE])
def test_a_data_link_notice_carries_a_24_hour_link_for_its_purpose_and_keeps_the_resend_slot(
    session: Session,
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    notice: notices.Notice,
    language: str,
) -> None:
    letter = factories.newsletter(session, language=language)
    (reader,) = factories.readers(session, letter, 1)
    reader.locale = language  # notices speak the reader's chosen language
    subscription = session.scalars(select(Subscription)).one()

    with SmtpTransport(settings.smtp_relays) as transport:
        assert signup.send_notice(session, subscription, notice, settings, transport)

    (message,) = smtp_server.wait_for(1)
    body = message.parsed().get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert ("24 heures" if language == "fr" else "24 hours") in text
    (link,) = re.findall(r"https?://\S+/d/\S+", text)
    token, action = urlsplit(link).path.removeprefix("/d/").split("/")
    purpose = signup.DATA_NOTICES[notice]
    assert action == ("export.json" if purpose == signup.EXPORT_PURPOSE else "erase")
    subscriber_id, _ = tokens.verify_expiring(settings.secret_key, purpose, token, 2, 24 * 3600)
    assert subscriber_id == reader.id
    # A data link is not a signup notice: the confirmation resend slot stays as it was.
    assert subscription.confirmation_sent_at is None
