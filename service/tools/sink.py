"""Local SMTP sink of the embedded default: every accepted message lands in a Maildir.

The sink plays the final MTA of a single machine: it accepts any recipient, adds the
`Return-Path` and `Delivered-To` headers a local delivery agent would, and writes one
file per recipient so the editor can browse what went out. It never relays anything.

Run it with `python -m service.tools.sink --host 127.0.0.1 --port 2525 --maildir instance/maildir`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import mailbox
import os
import re
import signal
import socket
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from types import FrameType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

__all__ = ["DATA_SIZE_LIMIT", "MaildirSink", "maildir_files", "main", "read_maildir", "serve"]

DATA_SIZE_LIMIT = 10 * 1024 * 1024
_SUBDIRS = ("tmp", "new", "cur")
_READ_CHUNK = 256 * 1024
# Maildir file names, from Python's mailbox module and this sink: "<sec>.M<usec>P<pid>Q<n>.<host>"
_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.")


def _open_maildir(maildir: Path) -> mailbox.Maildir:
    # mailbox.Maildir only creates tmp/new/cur when the folder itself is missing.
    for sub in _SUBDIRS:
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(maildir, factory=None, create=False)


class MaildirSink:
    """aiosmtpd handler that delivers each (message, recipient) pair to one Maildir file."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = Path(maildir)
        self.mailbox = _open_maildir(self.maildir)
        self._counter = itertools.count(1)
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        self._pid = os.getpid()

    def deliver(self, mail_from: str, rcpt: str, content: bytes) -> str:
        """Write one message for one recipient into new/ and return its Maildir key."""
        headers = f"Return-Path: <{mail_from}>\nDelivered-To: {rcpt}\n".encode()
        # Maildir files use bare LF line endings, like every local delivery agent writes them.
        data = headers + content.replace(b"\r\n", b"\n")
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}P{self._pid}Q{next(self._counter)}.{self._host}"
        tmp_path = self.maildir / "tmp" / key
        # mailbox.Maildir.add() fsyncs every file; a sink for a demo and for benchmarks
        # trades that durability for throughput, keeping the tmp/ then new/ protocol.
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            tmp_path.unlink(missing_ok=True)  # a half-written file is no delivery
            raise
        finally:
            os.close(fd)
        os.rename(tmp_path, self.maildir / "new" / key)
        return key

    async def handle_EHLO(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920): senders then put MAIL, RCPT and DATA in one write.

        aiosmtpd answers commands one line at a time from its buffer, in order, and the
        DATA phase below hands back what follows the message: it pipelines already.
        """
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Store the message once per accepted recipient."""
        content = envelope.original_content or b""
        # aiosmtpd reports the null reverse-path of bounces as "<>" itself.
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        for rcpt in envelope.rcpt_tos:
            try:
                self.deliver(mail_from, rcpt, content)
            except OSError as error:
                # A full disk is temporary: 452 makes the sender keep the message and try
                # again, where aiosmtpd's default 500 would fail it for good.
                return f"452 4.3.1 Insufficient system storage ({error.strerror or error})"
        return "250 2.0.0 Message accepted for delivery"


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP session with a DATA phase that scans for the terminator in bulk.

    aiosmtpd reads DATA one line at a time in Python, about 2 µs a line: most of the cost of
    a 20 kB newsletter. Searching whole chunks for CRLF.CRLF gives the same bytes several
    times faster. Unlike aiosmtpd it does not reject lines over 1000 octets: a sink keeps
    whatever it is given, within the size limit.
    """

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 (aiosmtpd dispatches on this name)
        """Receive the message body, then hand it to the handler's handle_DATA."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")

        limit = self.data_size_limit
        data = bytearray()
        too_much = False
        while True:
            chunk = await self._reader.read(_READ_CHUNK)
            if not chunk:
                # EOF: eof_received() is already cancelling this session.
                return
            scan_from = max(0, len(data) - 4)
            data += chunk
            if not too_much and data.startswith(b".\r\n"):
                end, rest = 0, 3  # an empty message: the terminator is the first line
                break
            found = data.find(b"\r\n.\r\n", scan_from)
            if found >= 0:
                end, rest = found + 2, found + 5
                break
            if limit and len(data) > limit:
                # Keep only the tail in which the terminator may be starting.
                too_much = True
                del data[:-4]
        leftover = data[rest:]
        if leftover:
            # A client that pipelines without PIPELINING: its next command stays readable.
            self._reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        if too_much or (limit and end > limit):
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 Error: Too much mail data")
            return

        content = bytes(data[:end])
        # Undo dot-stuffing (RFC 5321 section 4.5.2): a leading "." of a line was doubled.
        if content.startswith(b"."):
            content = content[1:]
        content = content.replace(b"\r\n.", b"\r\n")
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class _SinkController(Controller):
    def factory(self) -> SMTP:
        return _SinkSMTP(self.handler, **self.SMTP_kwargs)


def serve(host: str, port: int, maildir: Path) -> Controller:
    """Start a sink on host:port in a background thread and return its running controller."""
    controller = _SinkController(
        MaildirSink(maildir),
        hostname=host,
        port=port,
        # A fixed name spares a socket.getfqdn() DNS lookup on every connection.
        server_hostname="hebdo-sink.localhost",
        decode_data=False,
        enable_SMTPUTF8=True,
        data_size_limit=DATA_SIZE_LIMIT,
    )
    try:
        controller.start()
    except BaseException:
        # start() leaves its private event loop open when the bind fails.
        if not controller.loop.is_closed():
            controller.loop.close()
        raise
    return controller


def _sort_key(path: Path) -> tuple[float, int, str]:
    match = _NAME.match(path.name)
    if match:
        seconds, micros, _pid, counter = (int(group) for group in match.groups())
        return seconds + micros / 1e6, counter, path.name
    return path.stat().st_mtime, 0, path.name


def maildir_files(maildir: Path) -> list[Path]:
    """Paths of every delivered message (new/ and cur/), oldest delivery first."""
    files = [
        entry
        for sub in ("new", "cur")
        if (maildir / sub).is_dir()
        for entry in (maildir / sub).iterdir()
        if not entry.name.startswith(".")
    ]
    return sorted(files, key=_sort_key)


def read_maildir(maildir: Path) -> list[EmailMessage]:
    """Parse every delivered message of a Maildir, oldest delivery first; [] if it is absent."""
    messages: list[EmailMessage] = []
    for path in maildir_files(Path(maildir)):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def main(argv: list[str] | None = None) -> int:
    """Run the sink until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m service.tools.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", type=Path, default=Path("instance/maildir"))
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        controller = serve(args.host, args.port, args.maildir)
    except OSError as error:
        print(f"sink cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:
        print(f"sink listening on {args.host}:{args.port} → {args.maildir}", flush=True)
        # A bare wait() would also work on POSIX; the timeout keeps signals prompt everywhere.
        while not stop.wait(1.0):
            pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
