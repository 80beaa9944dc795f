"""Bounce and complaint webhooks: each provider's documented payload and signature.

An edition goes over real SMTP to four readers; the reports name the Message-ID
each reader's mail really carried. Signatures are made the way each provider makes
them: Mailgun's HMAC with a signing key, Postmark's Basic auth secret, SendGrid's
ECDSA P-256 key (generated here, its public half configured as SendGrid's), and
for Amazon SES an SNS message signed by an RSA certificate that this test makes
and serves over HTTP on loopback: the certificate URL rule is configurable
(HEBDO_SNS_CERT_URL_PATTERN) precisely so that a test can stand in for Amazon's
host; the topic allow-list is checked as in production. Every forged request is
refused with 403 and changes nothing; the same report twice is recorded once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.app import create_app
from service.cli import cli
from service.config import Settings
from service.models import Event, Suppression
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

MAILGUN_KEY = "key-7f3c2a1e9b8d4c6f0a5e3b2d1c9f8e7a"
POSTMARK_SECRET = "postmark-webhook-secret"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:hebdo-bounces"


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def sns_signer() -> Iterator[tuple[rsa.RSAPrivateKey, str]]:
    """An RSA key and its self-signed certificate, served over HTTP like Amazon's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.end_headers()
            self.wfile.write(pem)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/SimpleNotificationService-test.pem"
    yield key, url
    server.shutdown()


@pytest.fixture
def world(
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    sendgrid_key: ec.EllipticCurvePrivateKey,
) -> dict[str, Any]:
    """Four readers who got an edition; an app with every webhook configured."""
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        factories.readers(session, letter, 4)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=50)
        edition_id = edition.id
    assert loop.send_pending(sessions, settings, edition_id).sent == 4
    ids = {m.rcpt_tos[0]: str(m.parsed()["Message-ID"]) for m in smtp_server.wait_for(4)}
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hooked = replace(
        settings,
        mailgun_signing_key=MAILGUN_KEY,
        postmark_webhook_secret=POSTMARK_SECRET,
        sendgrid_public_key=base64.b64encode(public).decode(),
        ses_topic_arns=(TOPIC,),
        sns_cert_url_pattern=r"http://127\.0\.0\.1:\d+/[\w.-]+\.pem",
    )
    client = create_app(hooked).test_client(use_cookies=False)
    return {"client": client, "ids": ids, "edition": edition_id}


def state(sessions: sessionmaker[Session]) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    with sessions() as session:
        events = [
            (e.kind.value, e.value, e.source_key or "")
            for e in session.scalars(select(Event).order_by(Event.id))
        ]
        suppressed = sorted(session.scalars(select(Suppression.email)))
    return events, suppressed


def _post(client: FlaskClient, path: str, body: bytes, **headers: str) -> tuple[int, Any]:
    response = client.post(path, data=body, headers=headers, content_type="application/json")
    return response.status_code, response.get_json(silent=True)


# --- Mailgun ----------------------------------------------------------------------------


def _mailgun(event: dict[str, Any], key: str = MAILGUN_KEY) -> bytes:
    timestamp, token = "1764662400", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
    ).encode()


def test_mailgun(world: dict[str, Any], sessions: sessionmaker[Session]) -> None:
    client, ids = world["client"], world["ids"]
    failed = {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1764662400.87,
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": "r0@example.org",
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
            "attempt-no": 1,
        },
        "message": {"headers": {"message-id": ids["r0@example.org"].strip("<>")}},
    }
    before = state(sessions)
    forged = _mailgun(failed, key="key-guessed")
    assert _post(client, "/webhooks/mailgun", forged)[0] == 403
    assert state(sessions) == before
    for _ in range(2):
        status, answer = _post(client, "/webhooks/mailgun", _mailgun(failed))
        assert status == 200
    assert answer == {"recorded": 0, "duplicates": 1, "ignored": 0}
    events, suppressed = state(sessions)
    assert events == [("bounce", "hard", "mailgun:G9Bn5sl1TC6nu79C8C0bwg")]
    assert suppressed == ["r0@example.org"]
    temporary = {
        **failed,
        "id": "tmp-1",
        "severity": "temporary",
        "recipient": "r1@example.org",
        "delivery-status": {"code": 452, "message": "4.2.2 Mailbox full"},
        "message": {"headers": {"message-id": ids["r1@example.org"].strip("<>")}},
    }
    complained = {
        "id": "cmp-1",
        "event": "complained",
        "recipient": "r2@example.org",
        "message": {"headers": {"message-id": ids["r2@example.org"].strip("<>")}},
    }
    assert _post(client, "/webhooks/mailgun", _mailgun(temporary))[1]["recorded"] == 1
    assert _post(client, "/webhooks/mailgun", _mailgun(complained))[1]["recorded"] == 1
    events, suppressed = state(sessions)
    assert [e[:2] for e in events] == [
        ("bounce", "hard"),
        ("bounce", "soft"),
        ("complaint", "abuse"),
    ]
    assert suppressed == ["r0@example.org", "r2@example.org"]
    after = state(sessions)
    assert _post(client, "/webhooks/mailgun", b"{not json")[0] == 400
    unsigned = json.dumps({"event-data": failed}).encode()
    assert _post(client, "/webhooks/mailgun", unsigned)[0] == 403
    assert state(sessions) == after


# --- Postmark ---------------------------------------------------------------------------


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"hebdo:{password}".encode()).decode()


def test_postmark(world: dict[str, Any], sessions: sessionmaker[Session]) -> None:
    client, ids = world["client"], world["ids"]
    bounce = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "MessageStream": "outbound",
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": "r1@example.org",
        "From": "lettre@hebdo.example",
        "BouncedAt": "2026-12-02T16:33:54.9070259Z",
        "Content": f"Message-ID: {ids['r1@example.org']}\r\nSubject: ...",
    }
    body = json.dumps(bounce).encode()
    before = state(sessions)
    assert _post(client, "/webhooks/postmark", body, Authorization=_basic("wrong"))[0] == 403
    assert _post(client, "/webhooks/postmark", body)[0] == 403
    assert state(sessions) == before
    for _ in range(2):
        assert (
            _post(client, "/webhooks/postmark", body, Authorization=_basic(POSTMARK_SECRET))[0]
            == 200
        )
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Type": "SpamComplaint",
        "Email": "r3@example.org",
    }
    answer = _post(
        client,
        "/webhooks/postmark",
        json.dumps(complaint).encode(),
        Authorization=_basic(POSTMARK_SECRET),
    )[1]
    assert answer == {"recorded": 1, "duplicates": 0, "ignored": 0}
    events, suppressed = state(sessions)
    assert [e[:2] for e in events] == [
        ("bounce", "hard"),
        ("complaint", "abuse"),
    ]
    assert suppressed == ["r1@example.org", "r3@example.org"]


# --- SendGrid ---------------------------------------------------------------------------


def _sendgrid(
    events: list[dict[str, Any]], key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = "1764662400"
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def test_sendgrid(
    world: dict[str, Any], sessions: sessionmaker[Session], sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    client, ids = world["client"], world["ids"]
    events = [
        {
            "email": "r2@example.org",
            "timestamp": 1764662400,
            "smtp-id": ids["r2@example.org"],
            "event": "bounce",
            "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "type": "bounce",
        },
        {
            "email": "r3@example.org",
            "timestamp": 1764662401,
            "smtp-id": ids["r3@example.org"],
            "event": "bounce",
            "sg_event_id": "blocked-1",
            "status": "5.7.1",
            "reason": "554 5.7.1 Message rejected as spam",
            "type": "blocked",
        },
        {
            "email": "r0@example.org",
            "timestamp": 1764662402,
            "event": "spamreport",
            "sg_event_id": "spam-1",
        },
        {
            "email": "r1@example.org",
            "timestamp": 1764662403,
            "event": "delivered",
            "sg_event_id": "d-1",
        },
    ]
    body, headers = _sendgrid(events, sendgrid_key)
    other = ec.generate_private_key(ec.SECP256R1())
    before = state(sessions)
    forged_body, forged_headers = _sendgrid(events, other)
    assert _post(client, "/webhooks/sendgrid", forged_body, **forged_headers)[0] == 403
    tampered = body.replace(b"5.7.1", b"5.1.1")
    assert _post(client, "/webhooks/sendgrid", tampered, **headers)[0] == 403
    assert state(sessions) == before
    assert _post(client, "/webhooks/sendgrid", body, **headers)[1] == {
        "recorded": 3,
        "duplicates": 0,
        "ignored": 0,
    }
    assert _post(client, "/webhooks/sendgrid", body, **headers)[1]["duplicates"] == 3
    recorded, suppressed = state(sessions)
    assert [e[:2] for e in recorded] == [
        ("bounce", "hard"),
        ("bounce", "soft"),
        ("complaint", "abuse"),
    ]
    assert suppressed == ["r0@example.org", "r2@example.org"]  # a block is not a bad mailbox


# --- Amazon SES through SNS -------------------------------------------------------------


def _sns(
    message: dict[str, Any],
    signer: tuple[rsa.RSAPrivateKey, str],
    message_id: str,
    topic: str = TOPIC,
) -> dict[str, str]:
    key, cert_url = signer
    data = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": json.dumps(message),
        "Timestamp": "2026-12-02T12:00:00.000Z",
        "SignatureVersion": "1",
        "SigningCertURL": cert_url,
    }
    text = "".join(
        f"{k}\n{data[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type")
    )
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - SNS v1
    return {**data, "Signature": base64.b64encode(signature).decode()}


def test_ses_through_sns(
    world: dict[str, Any],
    sessions: sessionmaker[Session],
    sns_signer: tuple[rsa.RSAPrivateKey, str],
    env: dict[str, str],
) -> None:
    client, ids = world["client"], world["ids"]
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "feedbackId": "0102017d-ses-bounce-1",
            "bouncedRecipients": [
                {
                    "emailAddress": "r3@example.org",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {
            "messageId": "0102017d-ses-own-id",
            "destination": ["r3@example.org"],
            "commonHeaders": {"messageId": ids["r3@example.org"]},
        },
    }
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "feedbackId": "0102017d-ses-complaint-1",
            "complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": "r1@example.org"}],
        },
        # No Message-ID this time: the Feedback-ID header names the edition.
        "mail": {
            "messageId": "0102017d-ses-own-id-2",
            "headers": [{"name": "Feedback-ID", "value": f"{world['edition']}:lettre:hebdo"}],
        },
    }
    signed = _sns(bounce, sns_signer, "sns-1")
    before = state(sessions)
    tampered = {**signed, "Message": signed["Message"].replace("r3@", "r0@")}
    other_topic = _sns(bounce, sns_signer, "sns-1", topic="arn:aws:sns:eu-west-1:666:theirs")
    elsewhere = {**signed, "SigningCertURL": "https://example.org/SimpleNotificationService-x.pem"}
    for forged in (tampered, other_topic, elsewhere, {**signed, "Signature": "AAAA"}):
        assert _post(client, "/webhooks/ses", json.dumps(forged).encode())[0] == 403
    assert state(sessions) == before
    for _ in range(2):
        assert _post(client, "/webhooks/ses", json.dumps(signed).encode())[0] == 200
    answer = _post(
        client, "/webhooks/ses", json.dumps(_sns(complaint, sns_signer, "sns-2")).encode()
    )[1]
    assert answer == {"recorded": 1, "duplicates": 0, "ignored": 0}
    events, suppressed = state(sessions)
    assert events == [
        ("bounce", "hard", "ses:0102017d-ses-bounce-1:r3@example.org"),
        ("complaint", "abuse", "ses:0102017d-ses-complaint-1:r1@example.org"),
    ]
    assert suppressed == ["r1@example.org", "r3@example.org"]
    result = CliRunner(env=env).invoke(
        cli, ["editions", "results", str(world["edition"]), "--json"]
    )
    data = json.loads(result.output)
    assert (data["bounced"], data["bounces"], data["complaints"]) == (1, {"hard": 1, "soft": 0}, 1)


def test_webhooks_are_off_until_configured(client: FlaskClient) -> None:
    for provider in ("mailgun", "postmark", "sendgrid", "ses"):
        assert client.post(f"/webhooks/{provider}", data=b"{}").status_code == 404
