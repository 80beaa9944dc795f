"""The transport's own DATA phase: dot-stuffing only where a line starts with a dot."""

from __future__ import annotations

import pytest

from service.config import SmtpRelay
from service.mail.transport import SmtpTransport
from tests.support.smtp import RecordingSmtpServer


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: x\r\n\r\nno dot here\r\n",
        b"Subject: x\r\n\r\n.\r\n..\r\n.leading\r\nmid.dle\r\n",
        b".Subject: starts with a dot\r\n\r\nbody",
        b"Subject: x\r\n\r\nno final line break",
    ],
)
def test_message_arrives_byte_for_byte(smtp_server: RecordingSmtpServer, body: bytes) -> None:
    with SmtpTransport((SmtpRelay.from_url(smtp_server.url),)) as transport:
        transport.send("bounces@news.example", "zoe@example.org", body)
        transport.send("bounces@news.example", "max@example.org", body)
    first, second = smtp_server.wait_for(2)
    expected = body if body.endswith(b"\r\n") else body + b"\r\n"
    assert first.data == second.data == expected
    assert first.rcpt_tos == ("zoe@example.org",)
    assert first.mail_from == "bounces@news.example"


def test_a_message_said_dot_safe_goes_out_unsearched_and_whole(
    smtp_server: RecordingSmtpServer,
) -> None:
    # What the send loop does with mime.personalise's messages, whose lines never start
    # with a dot: no search, the same bytes at the relay.
    body = b"Subject: x\r\n\r\nmid.dle =2Eencoded dot\r\n"
    with SmtpTransport((SmtpRelay.from_url(smtp_server.url),)) as transport:
        transport.start("bounces@news.example", "zoe@example.org", body, dot_safe=True)
        transport.finish()
    (message,) = smtp_server.wait_for(1)
    assert message.data == body
