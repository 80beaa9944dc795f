"""Imports that leave readers pending mail them the confirmation link, through real workers.

The doors are the real ones (the CLI, the web upload and the subscribers page), the
worker is a real Celery process on the test's broker, and what the readers receive is
read off the real SMTP server: its confirmation link, followed like a reader would
(the page, then the button), confirms them.
"""

from __future__ import annotations

import html
import io
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscriptions
from service.broker import CeleryQueue
from service.cli import cli
from service.config import Settings
from service.models import (
    Subscriber,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    utcnow,
)
from service.team import editors
from tests import factories
from tests.support.smtp import RecordedMessage, RecordingSmtpServer
from tests.support.worker import WorkerProcess

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
CONFIRMED = "deja.confirmee@exemple.fr"
SUPPRESSED = "bloque@exemple.fr"


def _arrange(sessions: sessionmaker[Session]) -> int:
    """A newsletter with one confirmed reader and one suppressed address; its id."""
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        reader = subscriptions.find_or_create_subscriber(session, CONFIRMED, "Déjà")
        subscriptions.subscribe(session, letter, reader, confirmed=True, source="site")
        subscriptions.suppress(session, SUPPRESSED, SuppressionReason.COMPLAINT)
        return letter.id


def _csv(new: list[str]) -> str:
    rows = [f"{address},Lectrice {n}" for n, address in enumerate([*new, CONFIRMED, SUPPRESSED])]
    return "email,nom\n" + "\n".join(rows) + "\n"


def _status(sessions: sessionmaker[Session], email: str) -> SubscriptionStatus:
    with sessions() as session:
        return session.execute(
            select(Subscription.status).join(Subscriber).where(Subscriber.email == email)
        ).scalar_one()


def _confirm_by_link(client: FlaskClient, message: RecordedMessage) -> None:
    """Follow the message's confirmation link as a reader: open the page, press the button."""
    body = message.parsed().get_body(("plain",))
    assert body is not None
    (link,) = {u for u in re.findall(r"https?://\S+", body.get_content()) if "/confirm/" in u}
    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200
    token = CSRF.search(page.get_data(as_text=True))
    assert token is not None
    done = client.post(path, data={"csrf_token": token.group(1)})
    assert done.status_code == 200


def _age_notices(sessions: sessionmaker[Session], by: timedelta) -> None:
    """Move every reader's last confirmation mail (and signup) `by` into the past."""
    with sessions.begin() as session:
        session.execute(
            update(Subscription).values(
                confirmation_sent_at=utcnow() - by, created_at=utcnow() - by
            )
        )


def _hebdo(env: dict[str, str], *args: str) -> str:
    result = CliRunner(env=env).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _recipients(smtp_server: RecordedMessage | RecordingSmtpServer) -> list[str]:
    assert isinstance(smtp_server, RecordingSmtpServer)
    return sorted(r for m in smtp_server.messages for r in m.rcpt_tos)


@pytest.mark.slow
def test_cli_import_mails_each_pending_reader_one_working_link_at_the_shared_rate(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    client: FlaskClient,
    tmp_path: Path,
) -> None:
    newsletter_id = _arrange(sessions)
    new = [f"lectrice{n}@exemple.fr" for n in range(12)]
    source = tmp_path / "contacts.csv"
    source.write_text(_csv(new), encoding="utf-8")
    rate = 5
    limited = {**env, "HEBDO_RATE_PER_SECOND": str(rate), "HEBDO_BATCH_SIZE": "5"}

    with WorkerProcess(limited, tmp_path / "worker.log"):
        out = _hebdo(
            limited, "subscribers", "import", str(source), "--newsletter", "lettre",
            "--wait", "--timeout", "60",
        )  # fmt: skip
        assert "confirmation emails queued: 12" in out
        assert "sent 12 confirmation emails (0 failed, 0 skipped)" in out

        # The task runs twice more: every row is already sent, nothing goes out again.
        CeleryQueue(settings.broker_url).send_confirmations(newsletter_id, workers=2)
        time.sleep(3)

    received = smtp_server.messages
    assert _recipients(smtp_server) == sorted(new)  # one each; none to CONFIRMED or SUPPRESSED
    times = sorted(m.received_at for m in received)
    assert max(sum(1 for t in times if s <= t < s + 1) for s in times) <= rate
    assert times[-1] - times[0] >= len(new) / rate - 1

    for message in received:
        parsed = message.parsed()
        assert parsed["Auto-Submitted"] == "auto-generated"
        assert parsed["To"].addresses[0].addr_spec == message.rcpt_tos[0]
        _confirm_by_link(client, message)
    assert {_status(sessions, address) for address in new} == {SubscriptionStatus.CONFIRMED}


@pytest.mark.slow
def test_web_import_then_resend_mails_only_pending_readers_and_only_after_the_cool_down(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    client: FlaskClient,
    tmp_path: Path,
) -> None:
    _arrange(sessions)
    with sessions.begin() as session:
        editors.create(session, EDITOR, PASSWORD).language = "en"  # pages read in English
    login = client.post(
        "/login",
        data={"email": EDITOR, "password": PASSWORD, "csrf_token": _token(client, "/login")},
    )
    assert login.status_code == 302
    new = ["ana@exemple.fr", "bruno@exemple.fr", "cleo@exemple.fr"]

    with WorkerProcess(env, tmp_path / "worker.log"):
        report = client.post(
            "/subscribers/import",
            data={
                "csrf_token": _token(client, "/subscribers/import"),
                "newsletter": "lettre",
                "consent": "pending",
                "file": (io.BytesIO(_csv(new).encode("utf-8")), "contacts.csv"),
            },
            content_type="multipart/form-data",
        )
        assert report.status_code == 200
        assert "<strong>3</strong> confirmation emails queued" in _text(report)
        smtp_server.wait_for(3, timeout=30)
        _wait_until_sent(client, 3)
        assert _recipients(smtp_server) == sorted(new)
        by_reader = {m.rcpt_tos[0]: m for m in smtp_server.messages}
        _confirm_by_link(client, by_reader["ana@exemple.fr"])
        _confirm_by_link(client, by_reader["bruno@exemple.fr"])

        # Within the cool-down the button queues nothing, and the CLI neither.
        assert _resend_button(client) == 0
        assert "confirmation emails queued: 0" in _hebdo(
            env, "subscribers", "resend-confirmations", "--newsletter", "lettre"
        )

        # Past it, only the reader still pending gets one more; confirmed and
        # suppressed readers get nothing.
        _age_notices(sessions, timedelta(minutes=6))
        assert _resend_button(client) == 1
        smtp_server.wait_for(4, timeout=30)
        # The relay has the mail before the worker records it sent: age only what is recorded.
        _wait_until_sent(client, 4)
        assert _resend_button(client) == 0  # mailed a moment ago: the cool-down again

        # --older-than leaves out readers asked more recently than that.
        _age_notices(sessions, timedelta(hours=2))
        assert "confirmation emails queued: 0" in _hebdo(
            env, "subscribers", "resend-confirmations", "--newsletter", "lettre",
            "--older-than", "1d",
        )  # fmt: skip
        out = _hebdo(
            env, "subscribers", "resend-confirmations", "--newsletter", "lettre",
            "--older-than", "1h", "--wait", "--timeout", "60",
        )  # fmt: skip
        assert "confirmation emails queued: 1" in out
        assert "sent 1 confirmation emails" in out
        time.sleep(2)

    assert _recipients(smtp_server) == sorted([*new, "cleo@exemple.fr", "cleo@exemple.fr"])
    assert _status(sessions, "cleo@exemple.fr") == SubscriptionStatus.PENDING
    _confirm_by_link(client, smtp_server.messages[-1])
    assert _status(sessions, "cleo@exemple.fr") == SubscriptionStatus.CONFIRMED


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def _wait_until_sent(client: FlaskClient, sent: int, timeout: float = 30) -> None:
    """Poll the subscribers page until it counts `sent` confirmation emails sent."""
    deadline = time.monotonic() + timeout
    while True:
        page = _text(client.get("/subscribers/?newsletter=lettre"))
        counts = re.search(r"<strong>(\d+) queued</strong>,\s*<strong>(\d+) sent</strong>", page)
        assert counts is not None, page
        if (int(counts[1]), int(counts[2])) == (0, sent):
            return
        assert time.monotonic() < deadline, page
        time.sleep(0.2)


def _resend_button(client: FlaskClient) -> int:
    """Press "re-send to pending readers", confirm; how many the flash says were queued."""
    form = {
        "csrf_token": _token(client, "/subscribers/?newsletter=lettre"),
        "newsletter": "lettre",
        "status": "pending",
        "scope": "matching",
        "action": "resend",
    }
    ask = client.post("/subscribers/bulk", data=form)
    assert ask.status_code == 200
    asked = re.search(r"Re-send the confirmation email to (\d+) readers?\?", _text(ask))
    assert asked is not None, _text(ask)
    done = client.post("/subscribers/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302
    page = _text(client.get(done.headers["Location"]))
    queued = re.search(r"(\d+) confirmation emails? queued\.", page)
    count = int(queued.group(1)) if queued else 0
    if not queued:
        assert "No confirmation email queued" in page
    assert count == int(asked.group(1))
    return count
