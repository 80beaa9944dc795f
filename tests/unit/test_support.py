"""The real services the other tests stand on actually run and behave as documented."""

from __future__ import annotations

import email.policy
import random
import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from service.config import SmtpRelay
from service.mail.transport import SmtpTransport
from service.tools.sink import DATA_SIZE_LIMIT, read_maildir, serve
from tests.support import free_port
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.smtp import RecordingSmtpServer, SinkProcess

# Until tests/conftest.py registers the plugin; registering it twice is a no-op.
pytest_plugins = ["tests.support.fixtures"]


def _message(to: str = "lea@example.org", subject: str = "Semaine du 18 au 25 janvier") -> bytes:
    message = EmailMessage()
    message["From"] = "La rédaction <redaction@hebdo.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Bonjour Léa,\nvoici les nouvelles de la semaine.\n.ligne avec un point\n")
    return message.as_bytes(policy=email.policy.SMTP)


def test_postgres_cluster_serves_a_fresh_database(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database("support_check")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_cluster.port}/support_check"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == (
                "support_check"
            )
            assert conn.execute(sa.text("SHOW server_encoding")).scalar_one() == "UTF8"
    finally:
        engine.dispose()
        postgres_cluster.drop_database("support_check")


def test_postgres_database_can_be_cloned_from_a_template(
    postgres_cluster: PostgresCluster,
) -> None:
    template_engine = sa.create_engine(postgres_cluster.create_database("support_template"))
    try:
        with template_engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE edition (title text)"))
            conn.execute(sa.text("INSERT INTO edition VALUES ('Intelligence & Société')"))
    finally:
        template_engine.dispose()
    clone = sa.create_engine(
        postgres_cluster.create_database("support_clone", template="support_template")
    )
    try:
        with clone.connect() as conn:
            titles = conn.execute(sa.text("SELECT title FROM edition")).scalars().all()
        assert titles == ["Intelligence & Société"]
    finally:
        clone.dispose()
        postgres_cluster.drop_database("support_clone")
        postgres_cluster.drop_database("support_template")


def test_postgres_cluster_fails_loudly_without_binaries(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="initdb"), PostgresCluster(bindir=tmp_path):
        pass


def test_redis_server_answers_ping(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        client.set("hebdo:check", "oui")
        assert client.get("hebdo:check") == b"oui"
    finally:
        client.close()


def test_redis_server_fails_loudly_when_binary_is_missing() -> None:
    with (
        pytest.raises(RuntimeError, match="not found on PATH"),
        RedisServer(executable="redis-server-absent"),
    ):
        pass


def test_smtp_server_records_the_bytes_sent(smtp_server: RecordingSmtpServer) -> None:
    payload = _message()
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        refused = client.sendmail("bounce+1@hebdo.example", ["lea@example.org"], payload)
    assert refused == {}
    [received] = smtp_server.wait_for(1, timeout=5)
    assert received.mail_from == "bounce+1@hebdo.example"
    assert received.rcpt_tos == ("lea@example.org",)
    # smtplib dot-stuffs ".ligne avec un point" and the server undoes it.
    assert received.data == payload
    assert received.parsed()["Subject"] == "Semaine du 18 au 25 janvier"
    assert smtp_server.messages_for("LEA@example.org") == [received]
    assert smtp_server.url == f"smtp://127.0.0.1:{smtp_server.port}"


def test_recipient_responses_reach_smtplib_with_their_codes(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.recipient_responses = {
        "plus-tard@example.org": "451 4.7.1 Try later",
        "inconnu@example.org": "550 5.1.1 No such user",
    }
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(
                "bounce@hebdo.example",
                ["plus-tard@example.org", "inconnu@example.org"],
                _message(),
            )
        assert refused.value.recipients == {
            "plus-tard@example.org": (451, b"4.7.1 Try later"),
            "inconnu@example.org": (550, b"5.1.1 No such user"),
        }
        partly = client.sendmail(
            "bounce@hebdo.example", ["inconnu@example.org", "lea@example.org"], _message()
        )
    assert partly == {"inconnu@example.org": (550, b"5.1.1 No such user")}
    [received] = smtp_server.wait_for(1, timeout=5)
    assert received.rcpt_tos == ("lea@example.org",)


def test_temporary_rcpt_failures_then_success(smtp_server: RecordingSmtpServer) -> None:
    smtp_server.fail_next_n_rcpt("lea@example.org", 2, "451")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
            assert refused.value.recipients["lea@example.org"][0] == 451
        assert client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message()) == {}
    assert len(smtp_server.wait_for(1, timeout=5)) == 1


def test_refused_connections_until_accepted_again(smtp_server: RecordingSmtpServer) -> None:
    port = smtp_server.port
    smtp_server.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(smtp_server.host, port, timeout=5)
    smtp_server.accept_connections()
    assert smtp_server.port == port
    with smtplib.SMTP(smtp_server.host, port, timeout=5) as client:
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
    assert len(smtp_server.wait_for(1, timeout=5)) == 1


def test_hang_up_after_data_drops_the_connection_without_reply(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.hang_up_after_data(1)
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
    client.close()
    assert smtp_server.messages == []
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
    assert len(smtp_server.wait_for(1, timeout=5)) == 1


def test_hang_up_can_keep_the_message_like_a_lost_reply(
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.hang_up_after_data(1, keep_message=True)
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
    client.close()
    assert len(smtp_server.messages_for("lea@example.org")) == 1


def test_maildir_sink_stores_one_file_per_recipient_with_return_path(tmp_path: Path) -> None:
    maildir = tmp_path / "instance" / "maildir"
    controller = serve("127.0.0.1", free_port(), maildir)
    try:
        with smtplib.SMTP(controller.hostname, controller.port, timeout=5) as client:
            client.sendmail(
                "bounce+42@hebdo.example", ["lea@example.org", "marc@example.org"], _message()
            )
            client.sendmail("", ["lea@example.org"], _message(subject="Second"))
    finally:
        controller.stop()
    assert {p.name for p in maildir.iterdir()} == {"tmp", "new", "cur"}
    assert len(list((maildir / "new").iterdir())) == 3
    assert list((maildir / "tmp").iterdir()) == []
    messages = read_maildir(maildir)
    assert [(m["Return-Path"], m["Delivered-To"], m["Subject"]) for m in messages] == [
        ("<bounce+42@hebdo.example>", "lea@example.org", "Semaine du 18 au 25 janvier"),
        ("<bounce+42@hebdo.example>", "marc@example.org", "Semaine du 18 au 25 janvier"),
        ("<>", "lea@example.org", "Second"),
    ]
    body = messages[0].get_body(("plain",))
    assert body is not None
    assert body.get_content() == (
        "Bonjour Léa,\nvoici les nouvelles de la semaine.\n.ligne avec un point\n"
    )


def test_read_maildir_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert read_maildir(tmp_path / "absent") == []


def test_sink_process_delivers_and_stops_on_sigterm(tmp_path: Path) -> None:
    sink = SinkProcess(maildir=tmp_path / "maildir")
    with sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            for _ in range(5):
                client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
        assert sink.wait_for(5, timeout=10) == 5
        assert [m["Delivered-To"] for m in sink.messages()] == ["lea@example.org"] * 5
        assert sink.stop() == 0
    assert sink.count() == 5  # a maildir given by the caller outlives the process


@pytest.fixture
def sink_controller(tmp_path: Path) -> Iterator[tuple[Controller, Path]]:
    maildir = tmp_path / "maildir"
    controller = serve("127.0.0.1", free_port(), maildir)
    yield controller, maildir
    controller.stop()


def test_sink_keeps_large_bodies_byte_for_byte(sink_controller: tuple[Controller, Path]) -> None:
    controller, maildir = sink_controller
    rng = random.Random(7)
    # Lines starting with dots, lone dots and long lines, across many TCP reads.
    lines = [
        rng.choice([".", "..", ". ", "", "x"]) + "y" * rng.randrange(0, 300) for _ in range(4000)
    ]
    payload = ("Subject: gros\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()
    with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], payload)
    [stored] = list((maildir / "new").iterdir())
    expected = b"Return-Path: <bounce@hebdo.example>\nDelivered-To: lea@example.org\n"
    assert stored.read_bytes() == expected + payload.replace(b"\r\n", b"\n")


def test_sink_offers_pipelining_and_takes_pipelined_envelopes(
    sink_controller: tuple[Controller, Path],
) -> None:
    controller, maildir = sink_controller
    with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
    relay = SmtpRelay.from_url(f"smtp://{controller.hostname}:{controller.port}")
    with SmtpTransport((relay,)) as transport:
        for n in range(3):
            transport.send("bounce@hebdo.example", f"r{n}@example.org", _message())
        assert transport.messages_on_connection == 3
    assert sorted(m["Delivered-To"] for m in read_maildir(maildir)) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]


def test_sink_accepts_an_empty_message_and_a_pipelined_quit(
    sink_controller: tuple[Controller, Path],
) -> None:
    controller, maildir = sink_controller
    with socket.create_connection((controller.hostname, controller.port), timeout=5) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220")
        for command in (b"HELO client", b"MAIL FROM:<a@hebdo.example>", b"RCPT TO:<b@example.org>"):
            sock.sendall(command + b"\r\n")
            assert replies.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert replies.readline().startswith(b"354")
        sock.sendall(b".\r\nQUIT\r\n")
        assert replies.readline().startswith(b"250")
        assert replies.readline().startswith(b"221")
        replies.close()
    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes() == b"Return-Path: <a@hebdo.example>\nDelivered-To: b@example.org\n"


def test_sink_refuses_a_message_over_the_size_limit_and_stays_usable(
    sink_controller: tuple[Controller, Path],
) -> None:
    controller, maildir = sink_controller
    oversized = b"Subject: trop gros\r\n\r\n" + (b"z" * 998 + b"\r\n") * (
        DATA_SIZE_LIMIT // 1000 + 10
    )
    with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
        # Plain MAIL without SIZE=, so that the limit is enforced while reading DATA.
        client.ehlo()
        assert client.mail("bounce@hebdo.example")[0] == 250
        assert client.rcpt("lea@example.org")[0] == 250
        assert client.data(oversized)[0] == 552
        client.sendmail("bounce@hebdo.example", ["lea@example.org"], _message())
    assert [m["Subject"] for m in read_maildir(maildir)] == ["Semaine du 18 au 25 janvier"]
