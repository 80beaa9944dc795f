"""The whole path: readers → edition → real Celery worker → real SMTP server."""

from __future__ import annotations

import email
import email.policy
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import tokens
from service.config import Settings
from service.mail.mime import BOUNCE_PURPOSE, UNSUBSCRIBE_PURPOSE
from service.models import Delivery, DeliveryStatus, Edition
from service.sending import outbox
from tests import factories
from tests.support.queue import enqueue_send
from tests.support.smtp import RecordingSmtpServer
from tests.support.waits import wait_for_status
from tests.support.worker import WorkerProcess

READERS = 50


@pytest.mark.slow
def test_edition_reaches_each_of_50_readers_once_through_a_real_worker(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        people = factories.readers(session, letter, READERS)
        names = {p.email: p.name for p in people}
        edition = factories.edition(session, letter)
        started = factories.begin_sending(session, settings, edition, batch_size=20)
        edition_id = edition.id
    assert started.recipients == READERS

    with WorkerProcess(env, tmp_path / "worker.log"):
        enqueue_send(settings, edition_id, copies=3)
        wait_for_status(sessions, edition_id)
        received = smtp_server.wait_for(READERS, timeout=10)

        # The task runs again (and the snapshot is taken again): nothing more goes out.
        with sessions() as session, session.begin():
            current = session.get(Edition, edition_id)
            assert current is not None
            with pytest.raises(outbox.SendError):
                factories.begin_sending(session, settings, current, batch_size=20)
        enqueue_send(settings, edition_id, copies=2)
        time.sleep(3)

    received = smtp_server.messages
    assert len(received) == READERS
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(names)

    with sessions() as session:
        rows = {d.email: d for d in session.scalars(select(Delivery))}
        assert session.scalar(select(func.count()).select_from(Delivery)) == READERS
    assert {d.status for d in rows.values()} == {DeliveryStatus.SENT}

    for message in received:
        (rcpt,) = message.rcpt_tos
        delivery = rows[rcpt]
        parsed = email.message_from_bytes(message.data, policy=email.policy.strict)
        assert not parsed.defects
        for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id",
                     "List-Unsubscribe", "List-Unsubscribe-Post"):  # fmt: skip
            assert parsed[name] is not None, name
            assert not parsed[name].defects, name
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["To"].addresses[0].addr_spec == rcpt
        assert parsed["Message-ID"] == delivery.message_id
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", parsed["Message-ID"])
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Id"].endswith("<lettre.hebdo.test>")

        # The greeting and the unsubscribe link are this reader's own.
        html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
        assert html_part is not None
        assert text_part is not None
        html = html_part.get_content()
        text = text_part.get_content()
        assert f"Bonjour {names[rcpt]}," in html
        assert f"Bonjour {names[rcpt]}," in text
        https, mailto = re.findall(r"<([^>]+)>", parsed["List-Unsubscribe"])
        token = urlsplit(https).path.removeprefix("/u/")
        assert tokens.verify(settings.secret_key, UNSUBSCRIBE_PURPOSE, token, 1) == (delivery.id,)
        assert https in html
        assert https in text
        assert mailto.startswith("mailto:unsubscribe+")

        # The envelope sender (VERP) names the delivery.
        verp = message.mail_from.removeprefix("bounces+").split("@")[0]
        assert tokens.verify(settings.secret_key, BOUNCE_PURPOSE, verp, 1) == (delivery.id,)
