"""Preview and test sends: the exact message subscribers get, shown or mailed to editors.

Both build the message the way the send loop does (render, `mime.prepare`,
`mime.personalise`) but for delivery id 0, which no delivery row ever has: the
links in a preview or a test message lead nowhere, and nothing here writes a
Delivery or an Event row, so statistics never count them.
"""

from __future__ import annotations

import email
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.addresses import InvalidAddress, normalise
from service.config import Settings
from service.editions import store
from service.mail import dkim
from service.mail.dkim import DkimKey
from service.mail.mime import Envelope, PreparedEdition, personalise, prepare
from service.mail.render import RenderedEdition
from service.mail.transport import DeliveryError, RelayUnavailable, SmtpTransport, Transport
from service.models import Edition, Subscriber, utcnow
from service.sending import lifecycle

SAMPLE_NAME = "Marie Exemple"
SAMPLE_EMAIL = "lecteur@example.org"
PREVIEW_DELIVERY_ID = 0  # database ids start at 1: tokens for 0 never resolve
MAX_ADDRESSES = 10
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 90 * 1024
_PREFIXES = {"fr": "[ESSAI] ", "en": "[TEST] "}
_SEPARATORS = re.compile(r"[\s,;]+")


class BadTestAddresses(ValueError):
    """The list of test addresses cannot be used; the message says why."""

    def __init__(self, message: str, *, invalid: tuple[str, ...] = (), count: int = 0) -> None:
        super().__init__(message)
        self.invalid = invalid  # the addresses as typed, for a page to name them
        self.count = count  # how many valid addresses were given


@dataclass(frozen=True)
class SampleMessage:
    """One recipient's message and the parts an editor wants to inspect."""

    envelope: Envelope
    subject: str  # decoded
    headers: str  # the header block exactly as sent
    html: str  # the decoded HTML part
    text: str  # the decoded text part

    @property
    def size(self) -> int:
        """Bytes of the whole message."""
        return len(self.envelope.data)

    @property
    def html_size(self) -> int:
        """Bytes of the HTML part (UTF-8, decoded): what Gmail measures before clipping."""
        return len(self.html.encode("utf-8"))


@dataclass
class TestSendReport:
    """Which addresses the relay accepted and why the others failed."""

    __test__ = False  # a report, not a pytest class

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def subject_prefix(language: str) -> str:
    """What marks a test message in its subject: "[ESSAI] " or "[TEST] "."""
    return _PREFIXES.get(language.split("-", 1)[0].lower(), _PREFIXES["en"])


def rendering(edition: Edition, settings: Settings) -> RenderedEdition:
    """The frozen rendering once sending has started, else a fresh render of the content."""
    locked = not lifecycle.is_editable(edition)
    if locked and edition.rendered_html is not None and edition.rendered_text is not None:
        return RenderedEdition(
            subject=edition.rendered_subject or edition.subject,
            html=edition.rendered_html,
            text=edition.rendered_text,
            tracked_links=list(edition.tracked_links),
        )
    return store.render(
        edition, base_url=settings.base_url, templates_path=settings.email_templates_path
    )


def _prepared(
    edition: Edition, settings: Settings, rendered: RenderedEdition, prefix: str
) -> PreparedEdition:
    newsletter = edition.newsletter
    return prepare(
        edition_id=edition.id,
        newsletter_slug=newsletter.slug,
        newsletter_name=newsletter.name,
        language=newsletter.language,
        sender_name=newsletter.sender_name,
        sender_email=newsletter.sender_email,
        reply_to=newsletter.reply_to,
        subject=prefix + rendered.subject,
        html_body=rendered.html,
        text_body=rendered.text,
        secret=settings.secret_key,
        base_url=settings.base_url,
        bounce_domain=settings.bounce_domain,
    )


def sample_message(
    edition: Edition,
    settings: Settings,
    rendered: RenderedEdition | None = None,
    now: datetime | None = None,
) -> SampleMessage:
    """The message the sample recipient would get, as bytes and as its decoded parts."""
    prepared = _prepared(edition, settings, rendered or rendering(edition, settings), "")
    envelope = personalise(
        prepared, PREVIEW_DELIVERY_ID, SAMPLE_EMAIL, SAMPLE_NAME, now or utcnow()
    )
    return inspect(envelope)


def inspect(envelope: Envelope) -> SampleMessage:
    """Split a built message into its header block and decoded parts."""
    head, _, _ = envelope.data.partition(b"\r\n\r\n")
    message = email.message_from_bytes(envelope.data, _class=EmailMessage, policy=policy.default)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    return SampleMessage(
        envelope=envelope,
        subject=str(message["Subject"] or ""),
        headers=head.decode("ascii", "replace") + "\r\n",
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
    )


def parse_addresses(addresses: Iterable[str]) -> list[str]:
    """Normalised, de-duplicated test addresses; BadTestAddresses names every bad one."""
    found: list[str] = []
    invalid: list[str] = []
    problems: list[str] = []
    for chunk in addresses:
        for raw in _SEPARATORS.split(chunk):
            if not raw:
                continue
            try:
                address = normalise(raw)
            except InvalidAddress as exc:
                invalid.append(raw)
                problems.append(f"{raw}: {exc}")
                continue
            if address not in found:
                found.append(address)
    if problems:
        raise BadTestAddresses(
            "invalid address: " + "; ".join(problems), invalid=tuple(invalid), count=len(found)
        )
    if not found:
        raise BadTestAddresses("give at least one address")
    if len(found) > MAX_ADDRESSES:
        raise BadTestAddresses(
            f"{len(found)} addresses: a test goes to at most {MAX_ADDRESSES} addresses",
            count=len(found),
        )
    return found


def send_test(
    session: Session,
    edition: Edition,
    addresses: Iterable[str],
    settings: Settings,
    transport: Transport | None = None,
) -> TestSendReport:
    """Mail the edition, marked as a test, to a few addresses; record nothing."""
    recipients = parse_addresses(addresses)
    query = select(Subscriber.email, Subscriber.name).where(Subscriber.email.in_(recipients))
    names: dict[str, str] = dict(session.execute(query).all())
    prefix = subject_prefix(edition.newsletter.language)
    prepared = _prepared(edition, settings, rendering(edition, settings), prefix)
    key = dkim.key_from(settings)
    report = TestSendReport()
    own_transport = transport is None
    smtp: Transport = transport or SmtpTransport(settings.smtp_relays)
    try:
        for index, address in enumerate(recipients):
            mail_from, data = _test_message(
                prepared, address, names.get(address) or SAMPLE_NAME, key
            )
            try:
                smtp.send(mail_from, address, data)
            except RelayUnavailable as exc:
                report.failed.update(dict.fromkeys(recipients[index:], str(exc)))
                break
            except DeliveryError as exc:
                report.failed[address] = str(exc)
                continue
            report.sent.append(address)
    finally:
        if own_transport:
            smtp.close()
    return report


def _test_message(
    prepared: PreparedEdition, address: str, name: str, key: DkimKey | None
) -> tuple[str, bytes]:
    envelope = personalise(prepared, PREVIEW_DELIVERY_ID, address, name, utcnow())
    # Every test gets its own Message-ID: mail services drop a second message carrying
    # one they have already seen, and the editor would wait for a test that never shows.
    unique = f"<test.{prepared.edition_id}.{secrets.token_hex(8)}@{prepared.sender_domain}>"
    data = envelope.data.replace(
        f"Message-ID: {envelope.message_id}\r\n".encode("ascii"),
        f"Message-ID: {unique}\r\n".encode("ascii"),
        1,
    )
    if key is None:
        return envelope.mail_from, data
    return envelope.mail_from, dkim.signed(key, data)
