"""PIPELINING (RFC 2920): the envelope in one write when the relay offers it, and every reply read.

Against the tests' real aiosmtpd server (which offers PIPELINING unless told not to) and,
for a relay that answers DATA with 354 after refusing the recipient, a scripted one.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings, SmtpRelay
from service.mail.transport import PermanentFailure, SmtpTransport, TemporaryFailure
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

BODY = b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n"


def _transport(server: RecordingSmtpServer) -> SmtpTransport:
    return SmtpTransport((SmtpRelay.from_url(server.url),))


def test_the_envelope_goes_in_one_write_when_the_relay_offers_pipelining(
    smtp_server: RecordingSmtpServer,
) -> None:
    with _transport(smtp_server) as transport:
        transport.send("bounces@news.example", "zoe@example.org", BODY)
        transport.send("bounces@news.example", "max@example.org", BODY)
        assert transport.messages_on_connection == 2
    first, second = smtp_server.wait_for(2)
    assert first.pipelined
    assert second.pipelined
    assert first.data == second.data == BODY
    assert (first.mail_from, first.rcpt_tos) == ("bounces@news.example", ("zoe@example.org",))
    assert f"SIZE={len(BODY)}" in first.mail_options
    assert first.peer == second.peer


def test_command_by_command_when_the_relay_does_not_offer_it() -> None:
    with RecordingSmtpServer(pipelining=False) as server, _transport(server) as transport:
        transport.send("bounces@news.example", "zoe@example.org", BODY)
        (message,) = server.wait_for(1)
    assert not message.pipelined
    assert message.data == BODY


def test_smtputf8_addresses_are_pipelined_too(smtp_server: RecordingSmtpServer) -> None:
    with _transport(smtp_server) as transport:
        transport.send("bounces@news.example", "zoë@exemple.fr", BODY)
    (message,) = smtp_server.wait_for(1)
    assert message.pipelined
    assert message.rcpt_tos == ("zoë@exemple.fr",)
    assert "SMTPUTF8" in message.mail_options


@pytest.mark.parametrize(
    ("reply", "failure", "hard"),
    [
        ("550 5.1.1 No such user", PermanentFailure, True),
        ("552 5.2.2 Mailbox full", PermanentFailure, False),
        ("451 4.7.1 Greylisted", TemporaryFailure, False),
    ],
)
def test_a_refused_recipient_in_the_batch_fails_that_message_and_the_session_goes_on(
    reply: str, failure: type[Exception], hard: bool
) -> None:
    with (
        RecordingSmtpServer(recipient_responses={"gone@example.org": reply}) as server,
        _transport(server) as transport,
    ):
        transport.send("bounces@news.example", "before@example.org", BODY)
        with pytest.raises(failure) as refused:
            transport.send("bounces@news.example", "gone@example.org", BODY)
        # The DATA of the batch was refused in turn (no recipient): no content was sent,
        # the replies are all read and the next message goes over the same connection.
        transport.send("bounces@news.example", "after@example.org", BODY)
        before, after = server.wait_for(2)
    assert str(refused.value).startswith(reply)
    assert getattr(refused.value, "stage", None) == "rcpt"
    assert getattr(refused.value, "hard_bounce", False) is hard
    assert [m.rcpt_tos[0] for m in server.messages] == ["before@example.org", "after@example.org"]
    assert before.peer == after.peer
    assert after.pipelined


def test_a_refused_sender_fails_at_mail() -> None:
    with RecordingSmtpServer() as server, _transport(server) as transport:
        server.sender_response = "550 5.7.1 Sender refused"
        with pytest.raises(PermanentFailure) as refused:
            transport.send("bounces@news.example", "zoe@example.org", BODY)
        server.sender_response = None
        transport.send("bounces@news.example", "zoe@example.org", BODY)
        server.wait_for(1)
    assert refused.value.stage == "mail"
    assert len(server.messages) == 1


def test_a_connection_lost_after_the_content_is_a_temporary_failure(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.hang_up_after_data(1)
    with _transport(smtp_server) as transport:
        with pytest.raises(TemporaryFailure) as lost:
            transport.send("bounces@news.example", "zoe@example.org", BODY)
        assert lost.value.stage == "data"
        transport.send("bounces@news.example", "zoe@example.org", BODY)  # reconnects
    assert len(smtp_server.wait_for(1)) == 1


class _ScriptedRelay:
    """A relay that answers DATA with 354 though it refused the only recipient."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"220 scripted ESMTP\r\n")
            for line in lines:
                self.received += line
                command = line[:4].upper()
                if command == b"EHLO":
                    connection.sendall(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif command == b"MAIL":
                    connection.sendall(b"250 2.1.0 OK\r\n")
                elif command == b"RCPT":
                    connection.sendall(b"550 5.1.1 No such user\r\n")
                elif command == b"DATA":
                    connection.sendall(b"354 Go ahead anyway\r\n")
                elif line == b".\r\n":
                    connection.sendall(b"554 5.5.1 No valid recipients\r\n")
                elif command == b"RSET":
                    connection.sendall(b"250 2.0.0 OK\r\n")
                elif command == b"QUIT":
                    connection.sendall(b"221 2.0.0 Bye\r\n")
                    return

    def close(self) -> None:
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def scripted_relay() -> Iterator[_ScriptedRelay]:
    relay = _ScriptedRelay()
    yield relay
    relay.close()


def test_a_relay_taking_data_after_refusing_the_recipient_gets_an_empty_message(
    scripted_relay: _ScriptedRelay,
) -> None:
    relay = SmtpRelay.from_url(f"smtp://127.0.0.1:{scripted_relay.port}")
    with SmtpTransport((relay,)) as transport, pytest.raises(PermanentFailure) as refused:
        transport.send("bounces@news.example", "gone@example.org", BODY)
    scripted_relay.close()
    assert refused.value.stage == "rcpt"
    assert refused.value.hard_bounce
    # MAIL, RCPT and DATA in one write, then the lone dot: none of the message itself.
    sent = scripted_relay.received.split(b"\r\n")
    assert sent[1:5] == [
        b"MAIL FROM:<bounces@news.example>",  # the scripted relay offers no SIZE
        b"RCPT TO:<gone@example.org>",
        b"DATA",
        b".",
    ]
    assert b"leading dot" not in scripted_relay.received
    assert sent[5].upper() == b"RSET"  # the session is back in step


def test_one_connection_carries_every_batch_of_a_send(
    settings: Settings, sessions: sessionmaker[Session], smtp_server: RecordingSmtpServer
) -> None:
    settings = dataclasses.replace(settings, batch_size=2)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 5)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=2)
        edition_id = edition.id
    assert loop.send_pending(sessions, settings, edition_id).sent == 5
    received = smtp_server.wait_for(5)
    assert len({m.peer for m in received}) == 1
    assert all(m.pipelined for m in received)
    # Within a batch, each message's content carried the next one's envelope.
    assert [m.followed_by_envelope for m in received] == [True, False, True, False, False]
    assert sorted(m.rcpt_tos[0] for m in received) == sorted(
        {m.rcpt_tos[0] for m in received}
    )  # each reader once


def test_start_hands_the_message_over_and_finish_takes_the_relays_verdict(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.data_delay = 2.0  # the relay takes its time over the content
    with _transport(smtp_server) as transport:
        transport.start("bounces@news.example", "zoe@example.org", BODY)
        # start() came back before the relay answered: the send loop builds the next
        # message meanwhile. Nothing else may start on the transport until finish().
        assert smtp_server.messages == []
        with pytest.raises(RuntimeError):
            transport.start("bounces@news.example", "max@example.org", BODY)
        transport.finish()
        assert transport.messages_on_connection == 1
        transport.finish()  # nothing in flight: nothing to read
    (message,) = smtp_server.wait_for(1)
    assert message.data == BODY
    assert message.rcpt_tos == ("zoe@example.org",)


def test_a_refusal_of_the_content_comes_from_finish_and_the_session_goes_on(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.data_response = "554 5.7.1 Message rejected as spam"
    with _transport(smtp_server) as transport:
        transport.start("bounces@news.example", "zoe@example.org", BODY)
        with pytest.raises(PermanentFailure) as refused:
            transport.finish()
        assert refused.value.stage == "data"
        assert not refused.value.hard_bounce  # the content, not the mailbox
        smtp_server.data_response = None
        transport.send("bounces@news.example", "max@example.org", BODY)
        assert transport.messages_on_connection == 1
    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == ("max@example.org",)


def test_the_next_envelope_goes_with_this_content_and_is_answered_in_the_same_turn(
    smtp_server: RecordingSmtpServer,
) -> None:
    asked: list[str] = []

    def next_one() -> tuple[str, str]:
        asked.append("next")
        return "bounces@news.example", "max@example.org"

    with _transport(smtp_server) as transport:
        transport.start("bounces@news.example", "zoe@example.org", BODY, then=next_one)
        transport.finish()
        # The announced envelope's replies are read by the next start, which sends no
        # second envelope: the relay would refuse a MAIL inside the open transaction.
        transport.start("bounces@news.example", "max@example.org", BODY)
        transport.finish()
        assert transport.messages_on_connection == 2
    first, second = smtp_server.wait_for(2)
    assert asked == ["next"]
    assert first.followed_by_envelope
    assert not second.followed_by_envelope
    assert (first.rcpt_tos, second.rcpt_tos) == (("zoe@example.org",), ("max@example.org",))
    assert first.data == second.data == BODY
    assert first.peer == second.peer


@pytest.mark.parametrize("then_start", ["nothing", "another reader"])
def test_an_announced_envelope_that_gets_no_content_delivers_nothing(
    smtp_server: RecordingSmtpServer, then_start: str
) -> None:
    with _transport(smtp_server) as transport:
        transport.start(
            "bounces@news.example",
            "zoe@example.org",
            BODY,
            then=lambda: ("bounces@news.example", "max@example.org"),
        )
        transport.finish()
        if then_start == "another reader":
            # Not the announced message: the open transaction is dropped, a new one starts.
            transport.send("bounces@news.example", "ann@example.org", BODY)
    # Closed with max's transaction open after DATA: no QUIT (it would be content), the
    # relay discards the unfinished message.
    expected = ["zoe@example.org"] + (["ann@example.org"] if then_start != "nothing" else [])
    received = smtp_server.wait_for(len(expected))
    time.sleep(0.3)  # what arrives late would be a message the relay should not have
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == expected
    assert received[0].followed_by_envelope
    assert smtp_server.messages_for("max@example.org") == []
