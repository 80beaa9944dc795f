"""Bounces and complaints that relays report over HTTP: Amazon SES (through SNS),
Mailgun, Postmark and SendGrid.

Each provider's request is checked by its own means before anything is read:
SNS by the RSA signature of Amazon's certificate (fetched only from the URL pattern
`Settings.sns_cert_url_pattern`, and only for the topics in `ses_topic_arns`: anyone
can create an SNS topic and have Amazon sign for it), Mailgun by the HMAC of its
signing key, Postmark by the secret of the webhook URL's Basic auth, SendGrid by
the ECDSA signature of its Event Webhook. A request that fails its check raises
`Forged` and changes nothing.

A checked report becomes `Report`s, one per recipient, then `apply` finds the
delivery (by our Message-ID, which names the delivery and is stored on it; else by
the Feedback-ID's edition and the recipient; else the recipient's latest
delivery) and records it by the rules of `hebdo inbound` (inbound.bounce_kind,
record_failure, record_complaint). Each report carries the provider's own id
(`source_key`, unique in the event table): the same report posted twice is
recorded once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.mail.transport import enhanced_status
from service.models import Delivery, DeliveryStatus, Event
from service.tracking import events, inbound

MAX_BODY = 1_000_000  # bytes; a provider's batch is far smaller

Kind = Literal["hard_bounce", "soft_bounce", "complaint"]
_OUR_MESSAGE_ID = inbound.OUR_MESSAGE_ID
_FEEDBACK_ID = re.compile(r"^(\d+):[^:]*:hebdo$")


class Forged(ValueError):
    """The request did not pass its provider's check: nothing was read from it."""


class Unreadable(ValueError):
    """The request passed its check but is not a report we can read (a 400)."""


@dataclass(frozen=True)
class Report:
    """One recipient's bounce or complaint, as a provider reported it."""

    source_key: str  # "provider:id" of this report, kept once
    kind: Kind
    recipient: str
    message_id: str | None = None
    feedback_id: str | None = None
    detail: str = ""  # a failure's status and diagnostic; a complaint's feedback type (RFC 5965)


@dataclass(frozen=True)
class Outcome:
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0


def _failure(key: str, recipient: str, permanent: bool, status: str, diagnostic: str,
             message_id: str | None = None, feedback_id: str | None = None) -> Report:  # fmt: skip
    action = "failed" if permanent else "delayed"
    kind = inbound.bounce_kind(action, status, diagnostic)
    detail = " ".join(f"{status} {diagnostic}".split())[:500]
    return Report(key, kind, recipient, message_id, feedback_id, detail)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Unreadable("not JSON") from exc


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


# --- Mailgun --------------------------------------------------------------------------


def mailgun(body: bytes, signing_key: str) -> list[Report]:
    """Mailgun's webhook (JSON): HMAC-SHA256 of timestamp + token under the signing key."""
    data = _json(body)
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, dict):
        raise Forged("no signature")
    timestamp, token = _str(signature.get("timestamp")), _str(signature.get("token"))
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), _str(signature.get("signature"))):
        raise Forged("bad signature")
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise Unreadable("no event-data")
    key = f"mailgun:{_str(event.get('id'))}"
    recipient = _str(event.get("recipient"))
    message = _obj(event.get("message"))
    headers = _obj(message.get("headers"))
    message_id = _str(headers.get("message-id")) or None
    kind = _str(event.get("event"))
    if kind == "complained":
        return [Report(key, "complaint", recipient, message_id, None, "abuse")]
    if kind != "failed":
        return []
    status = _obj(event.get("delivery-status"))
    code, text = _str(status.get("code")), _str(status.get("message"))
    permanent = _str(event.get("severity")) == "permanent"
    enhanced = _str(status.get("enhanced-code"))
    return [_failure(key, recipient, permanent, enhanced, f"smtp; {code} {text}", message_id)]


# --- Postmark -------------------------------------------------------------------------


def postmark(body: bytes, authorization: str | None, secret: str) -> list[Report]:
    """Postmark's bounce and spam-complaint webhooks, behind the URL's Basic auth secret."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        password = ""
    if scheme.lower() != "basic" or not hmac.compare_digest(password.encode(), secret.encode()):
        raise Forged("bad credentials")
    data = _json(body)
    if not isinstance(data, dict):
        raise Unreadable("not an object")
    record = _str(data.get("RecordType"))
    key = f"postmark:{record}:{_str(data.get('ID'))}"
    recipient = _str(data.get("Email"))
    details = _str(data.get("Details"))
    # Our Message-ID shows in the bounced message's headers when Postmark includes them.
    found = _OUR_MESSAGE_ID.search(_str(data.get("Content")) + " " + details)
    message_id = f"<{found[0].strip('<>')}>" if found else None
    kind = _str(data.get("Type"))
    if record == "SpamComplaint" or kind == "SpamComplaint":
        return [Report(key, "complaint", recipient, message_id, None, "abuse")]
    if record != "Bounce":
        return []
    # Postmark's HardBounce means "unknown user, mailbox not found": 5.1.1 when the
    # details name no status of their own; everything else is temporary or not about
    # the mailbox (DnsError, Transient, SoftBounce, Blocked…).
    permanent = kind in ("HardBounce", "BadEmailAddress")
    status = "" if enhanced_status(details) or not permanent else "5.1.1"
    return [_failure(key, recipient, permanent, status, details or kind, message_id)]


# --- SendGrid -------------------------------------------------------------------------


def sendgrid(body: bytes, signature: str | None, timestamp: str | None, key: str) -> list[Report]:
    """SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + body."""
    try:
        public = load_der_public_key(base64.b64decode(key))
        raw = base64.b64decode(signature or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Forged("unreadable signature or key") from exc
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise Forged("not an ECDSA key")
    try:
        public.verify(raw, (timestamp or "").encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise Forged("bad signature") from exc
    data = _json(body)
    if not isinstance(data, list):
        raise Unreadable("not a list of events")
    reports = []
    for event in data:
        if not isinstance(event, dict):
            continue
        name, kind = _str(event.get("event")), _str(event.get("type"))
        key_ = f"sendgrid:{_str(event.get('sg_event_id'))}"
        recipient = _str(event.get("email"))
        message_id = _str(event.get("smtp-id")) or None
        if name == "spamreport":
            reports.append(Report(key_, "complaint", recipient, message_id, None, "abuse"))
        elif name in ("bounce", "deferred"):
            # "blocked" is SendGrid's word for a refusal not about the mailbox: never hard.
            permanent = name == "bounce" and kind != "blocked"
            status, reason = _str(event.get("status")), _str(event.get("reason"))
            reports.append(
                _failure(key_, recipient, permanent, status, f"smtp; {reason}", message_id)
            )
    return reports


# --- Amazon SES through SNS -----------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class SnsResult:
    reports: list[Report]
    subscribe_url: str | None = None  # a checked subscription confirmation to visit


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - URL checked by pattern
        return bytes(response.read(100_000))


@lru_cache(maxsize=16)
def _certificate(url: str, fetch: Callable[[str], bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(fetch(url))


def sns(
    body: bytes,
    topic_arns: tuple[str, ...],
    cert_url_pattern: str,
    fetch: Callable[[str], bytes] = _fetch,
) -> SnsResult:
    """An SNS message: signature checked against Amazon's certificate, topic allowed."""
    data = _json(body)
    if not isinstance(data, dict):
        raise Forged("not an SNS message")
    kind = _str(data.get("Type"))
    if kind not in _SNS_FIELDS:
        raise Forged(f"unknown SNS type {kind[:40]!r}")
    if _str(data.get("TopicArn")) not in topic_arns:
        raise Forged("topic not allowed")
    cert_url = _str(data.get("SigningCertURL"))
    if not re.fullmatch(cert_url_pattern, cert_url):
        raise Forged("certificate URL not Amazon's")
    text = "".join(
        f"{name}\n{data[name]}\n" for name in _SNS_FIELDS[kind] if isinstance(data.get(name), str)
    )
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA256() if _str(data.get("SignatureVersion")) == "2" else hashes.SHA1()  # noqa: S303 - SNS signature version 1 is SHA1withRSA
    )
    try:
        public = _certificate(cert_url, fetch).public_key()
        signature = base64.b64decode(_str(data.get("Signature")), validate=True)
        if not isinstance(public, rsa.RSAPublicKey):
            raise Forged("not an RSA certificate")
        public.verify(signature, text.encode(), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, binascii.Error, ValueError, OSError) as exc:
        raise Forged(f"bad signature ({type(exc).__name__})") from exc
    if kind == "SubscriptionConfirmation":
        subscribe = _str(data.get("SubscribeURL"))
        host_ok = re.match(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/", subscribe)
        return SnsResult([], subscribe if host_ok else None)
    message = _json(_str(data.get("Message")).encode())
    return SnsResult(_ses(message, _str(data.get("MessageId"))))


def _ses(message: Any, sns_id: str) -> list[Report]:
    if not isinstance(message, dict):
        raise Unreadable("SES message is not an object")
    mail = _obj(message.get("mail"))
    common = _obj(mail.get("commonHeaders"))
    message_id = _str(common.get("messageId")) or None
    feedback_id = None
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and _str(header.get("name")).lower() == "feedback-id":
            feedback_id = _str(header.get("value"))
        if isinstance(header, dict) and _str(header.get("name")).lower() == "message-id":
            message_id = message_id or _str(header.get("value"))
    kind = _str(message.get("notificationType") or message.get("eventType"))
    reports = []
    if kind == "Bounce":
        bounce = _obj(message.get("bounce"))
        permanent = _str(bounce.get("bounceType")) == "Permanent"
        report_id = _str(bounce.get("feedbackId")) or sns_id
        for person in bounce.get("bouncedRecipients") or []:
            if not isinstance(person, dict):
                continue
            recipient = _str(person.get("emailAddress"))
            reports.append(
                _failure(
                    f"ses:{report_id}:{recipient}"[:200],
                    recipient,
                    permanent and _str(person.get("action") or "failed") == "failed",
                    _str(person.get("status")),
                    _str(person.get("diagnosticCode")),
                    message_id,
                    feedback_id,
                )
            )
    elif kind == "Complaint":
        complaint = _obj(message.get("complaint"))
        report_id = _str(complaint.get("feedbackId")) or sns_id
        feedback_type = _str(complaint.get("complaintFeedbackType")) or "abuse"
        for person in complaint.get("complainedRecipients") or []:
            if isinstance(person, dict):
                recipient = _str(person.get("emailAddress"))
                reports.append(
                    Report(
                        f"ses:{report_id}:{recipient}"[:200],
                        "complaint",
                        recipient,
                        message_id,
                        feedback_id,
                        feedback_type,
                    )
                )
    return reports


# --- Applying reports -----------------------------------------------------------------


def _delivery(session: Session, report: Report) -> int | None:
    """The delivery a report is about, or None."""
    delivery_id = inbound.delivery_by_message_id(session, report.message_id)
    if delivery_id is not None:
        return delivery_id
    recipient = report.recipient.strip().lower()
    if not recipient:
        return None
    query = select(Delivery.id).where(Delivery.email == recipient)
    edition = _FEEDBACK_ID.match(report.feedback_id or "")
    if edition:
        query = query.where(Delivery.edition_id == int(edition[1]))
    found = session.scalar(
        query.where(Delivery.status == DeliveryStatus.SENT)
        .order_by(Delivery.sent_at.desc())
        .limit(1)
    )
    return None if found is None else int(found)


def apply(session: Session, reports: list[Report]) -> Outcome:
    """Record each report once, by the rules of `hebdo inbound`."""
    recorded = duplicates = ignored = 0
    for report in reports:
        known = session.scalar(select(Event.id).where(Event.source_key == report.source_key))
        if known is not None:
            duplicates += 1
            continue
        delivery_id = _delivery(session, report)
        if delivery_id is None:
            ignored += 1
            continue
        ref = events.lookup(session, delivery_id)
        if report.kind == "complaint":
            inbound.record_complaint(session, ref, report.detail or "abuse", report.source_key)
        else:
            inbound.record_failure(session, ref, report.kind, report.detail, report.source_key)
        recorded += 1
    return Outcome(recorded, duplicates, ignored)
