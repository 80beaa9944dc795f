"""SMTP servers for the tests: an in-process recording server and the sink as a process.

`RecordingSmtpServer` runs aiosmtpd in a thread of the test process and can misbehave on
purpose like a real relay does (temporary and permanent refusals, an outage, a dropped
connection after DATA). `SinkProcess` runs `python -m service.tools.sink` in its own process, for
benchmarks and crash tests where the test process's GIL must not be the bottleneck.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.tools.sink import DATA_SIZE_LIMIT, read_maildir
from tests.support import free_port

__all__ = ["RecordedMessage", "RecordingSmtpServer", "SinkProcess"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
_START_ATTEMPTS = 5


@dataclass(frozen=True)
class RecordedMessage:
    """One accepted SMTP transaction, as the server saw it."""

    mail_from: str  # "" for the null reverse-path of bounces
    rcpt_tos: tuple[str, ...]
    data: bytes  # the DATA payload, CRLF line endings, dot-stuffing removed
    received_at: float  # time.time() when the server accepted it
    peer: str  # "host:port" of the client connection, to tell connections apart
    mail_options: tuple[str, ...] = ()  # e.g. ("SIZE=1234", "SMTPUTF8")
    # RCPT and DATA had already arrived when MAIL was read: sent in one write (RFC 2920).
    pipelined: bool = False
    # The next MAIL, RCPT and DATA had already arrived when this content ended: the client
    # wrote the next envelope with this content (RFC 2920 3.1).
    followed_by_envelope: bool = False

    def parsed(self) -> EmailMessage:
        """The message parsed with the modern email policy."""
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


def _reply(code: str | int, text: str) -> str:
    """A full SMTP reply from a bare code such as 451, or the reply itself if already full."""
    code = str(code).strip()
    if code.isdigit():
        return f"{code} {code[0]}.0.0 {text}"
    return code


class _RecordingHandler:
    def __init__(self, owner: RecordingSmtpServer) -> None:
        self._owner = owner

    async def handle_EHLO(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself without this hook
        if self._owner.pipelining:
            # aiosmtpd reads one command line at a time from its buffer, so commands
            # sent together are answered in order: it pipelines, it just does not say so.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._owner.sender_response is not None:
            return self._owner.sender_response
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        # What the client sent after MAIL and the server has not read yet (aiosmtpd's
        # StreamReader buffer): RCPT and DATA there mean they came in the same write.
        pending = bytes(getattr(getattr(server, "_reader", None), "_buffer", b"")).upper()
        envelope.pipelined = pending.startswith(b"RCPT TO:") and b"\r\nDATA\r\n" in pending  # type: ignore[attr-defined]
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._owner._rcpt_refusal(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._owner.data_response is not None:
            return self._owner.data_response  # refused after the data: nothing kept
        if self._owner.data_delay:
            # A slow relay: the message is taken only after this long (other sessions go on).
            await asyncio.sleep(self._owner.data_delay)
        pending = bytes(getattr(getattr(server, "_reader", None), "_buffer", b"")).upper()
        hang_up, keep = self._owner._take_hang_up()
        if not hang_up or keep:
            peer = session.peer
            self._owner._record(
                RecordedMessage(
                    mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=bytes(envelope.original_content or b""),
                    received_at=time.time(),
                    peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
                    mail_options=tuple(envelope.mail_options),
                    pipelined=getattr(envelope, "pipelined", False),
                    followed_by_envelope=pending.startswith(b"MAIL FROM:")
                    and b"\r\nDATA\r\n" in pending,
                )
            )
        if hang_up and server.transport is not None:
            server.transport.close()
            # connection_lost() cancels this coroutine, so no reply is ever written.
            await asyncio.get_running_loop().create_future()
        return "250 2.0.0 OK: queued"


class RecordingSmtpServer:
    """aiosmtpd in a thread that records every message and can fail on demand."""

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        recipient_responses: Mapping[str, str] | None = None,
        *,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self._requested_port = port
        # Whether EHLO offers PIPELINING (RFC 2920), as Postfix and most relays do; False
        # plays one that does not, so the transport sends command by command.
        self.pipelining = pipelining
        # Whether EHLO offers SMTPUTF8 (RFC 6531); change it between refuse_connections()
        # and accept_connections() to play a relay that does not.
        self.smtputf8 = smtputf8
        self.port = port or 0
        # Replies given at RCPT instead of accepting, e.g. {"x@example.org": "451 4.7.1 Later"}.
        self.recipient_responses: dict[str, str] = dict(recipient_responses or {})
        # A reply given to every MAIL FROM instead of accepting it (a relay refusing our sender).
        self.sender_response: str | None = None
        # A reply given after every message's data instead of accepting it (e.g. a relay
        # whose disk is full: "452 4.3.1 Insufficient system storage").
        self.data_response: str | None = None
        # Seconds each DATA takes before the message is accepted (a slow relay).
        self.data_delay = 0.0
        self._lock = threading.Condition()
        self._messages: list[RecordedMessage] = []
        self._temporary_failures: dict[str, list[str]] = {}
        self._hang_ups = 0
        self._keep_hung_up_messages = False
        self._controller: Controller | None = None
        self._handler = _RecordingHandler(self)

    @property
    def url(self) -> str:
        """smtp:// URL of the server."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def accepting(self) -> bool:
        """Whether the listener is up."""
        return self._controller is not None

    @property
    def messages(self) -> list[RecordedMessage]:
        """A copy of the messages received so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def messages_for(self, address: str) -> list[RecordedMessage]:
        """Messages whose accepted recipients include address (case-insensitive)."""
        wanted = address.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedMessage]:
        """Block until at least count messages arrived; TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} messages within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget the recorded messages."""
        with self._lock:
            self._messages.clear()

    def fail_next_n_rcpt(
        self, address: str, n: int, code: str | int = "451 4.7.1 Try again later"
    ) -> None:
        """Refuse the next n RCPT TO for address with code (a bare 4xx or a full reply)."""
        reply = _reply(code, "Try again later")
        with self._lock:
            self._temporary_failures.setdefault(address.lower(), []).extend([reply] * n)

    def hang_up_after_data(self, n: int = 1, *, keep_message: bool = False) -> None:
        """Close the next n connections right after DATA, without any reply.

        keep_message=True records the message anyway: the ambiguous case of a relay that
        queued the mail but whose answer was lost, which the client must retry as-is.
        """
        with self._lock:
            self._hang_ups += n
            self._keep_hung_up_messages = keep_message

    def refuse_connections(self) -> None:
        """Close the listener: clients get ECONNREFUSED until accept_connections()."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def accept_connections(self) -> None:
        """Listen again on the same port."""
        if self._controller is None:
            self._controller = self._start_controller(self.port)

    def start(self) -> None:
        """Start listening on the requested port, or on a free one."""
        if self._controller is not None:
            raise RuntimeError("RecordingSmtpServer already started")
        last_error: OSError | None = None
        for _attempt in range(_START_ATTEMPTS):
            port = self._requested_port or free_port()
            try:
                self._controller = self._start_controller(port)
            except OSError as error:
                # Another process may have taken the free port in between: pick another one.
                last_error = error
                if self._requested_port:
                    break
                continue
            self.port = port
            return
        raise RuntimeError(f"RecordingSmtpServer could not listen: {last_error}")

    def stop(self) -> None:
        """Stop listening."""
        self.refuse_connections()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_controller(self, port: int) -> Controller:
        controller = Controller(
            self._handler,
            hostname=self.host,
            port=port,
            # A fixed name spares a socket.getfqdn() DNS lookup on every connection.
            server_hostname="hebdo-test-smtp.localhost",
            decode_data=False,
            enable_SMTPUTF8=self.smtputf8,
            data_size_limit=DATA_SIZE_LIMIT,
        )
        try:
            controller.start()
        except BaseException:
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        return controller

    # Called from the server thread.

    def _rcpt_refusal(self, address: str) -> str | None:
        key = address.lower()
        with self._lock:
            pending = self._temporary_failures.get(key)
            if pending:
                return pending.pop(0)
            responses = {k.lower(): v for k, v in self.recipient_responses.items()}
        response = responses.get(key)
        return None if response is None else _reply(response, "Rejected")

    def _take_hang_up(self) -> tuple[bool, bool]:
        with self._lock:
            if self._hang_ups <= 0:
                return False, False
            self._hang_ups -= 1
            return True, self._keep_hung_up_messages

    def _record(self, message: RecordedMessage) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()


class SinkProcess:
    """`python -m service.tools.sink` as a child process, delivering into a Maildir."""

    host = "127.0.0.1"

    def __init__(
        self,
        maildir: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 20.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self._requested_maildir = maildir
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._extra_env = dict(extra_env or {})
        self._workdir: Path | None = None
        self.maildir = maildir or Path()
        self.port = port or 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """smtp:// URL of the sink."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        """Where the sink's stderr goes."""
        if self._workdir is None:
            raise RuntimeError("SinkProcess has not been started")
        return self._workdir / "sink.stderr"

    def count(self) -> int:
        """How many message files the Maildir holds (one per recipient)."""
        return sum(
            len(os.listdir(self.maildir / sub))
            for sub in ("new", "cur")
            if (self.maildir / sub).is_dir()
        )

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Block until the Maildir holds at least count files; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while (current := self.count()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} messages within {timeout}s, got {current}")
            time.sleep(0.02)
        return current

    def messages(self) -> list[EmailMessage]:
        """Every delivered message, oldest first."""
        return read_maildir(self.maildir)

    def start(self) -> None:
        """Spawn the sink and wait for its "sink listening" line."""
        if self.process is not None:
            raise RuntimeError("SinkProcess already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="hebdo-sink-"))
        self.maildir = self._requested_maildir or self._workdir / "maildir"
        try:
            self._spawn()
        except BaseException:
            self._cleanup()
            raise

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the sink, wait for it and return its exit status."""
        returncode = self._end(signal.SIGTERM, timeout)
        self._cleanup()
        return returncode

    def kill(self) -> int:
        """SIGKILL the sink (a crash); the Maildir stays readable until stop()/exit."""
        return self._end(signal.SIGKILL, 10.0)

    def __enter__(self) -> SinkProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _end(self, signum: int, timeout: float) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._extra_env}
        for _attempt in range(_START_ATTEMPTS):
            self.port = self._requested_port or free_port()
            command = [
                sys.executable,
                "-m",
                "service.tools.sink",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--maildir",
                str(self.maildir),
            ]
            with self.stderr_path.open("wb") as stderr:
                process = subprocess.Popen(
                    command, cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
                )
            line = _read_line(process, self._startup_timeout)
            if line.startswith("sink listening on"):
                self.process = process
                return
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
            errors = self.stderr_path.read_text(errors="replace")
            # Another process may have taken the free port in between: pick another one.
            if "address already in use" in errors.lower() and not self._requested_port:
                continue
            raise RuntimeError(
                f"sink did not start (exit status {process.returncode}): {' '.join(command)}\n"
                f"stdout: {line!r}\nstderr:\n{errors}"
            )
        raise RuntimeError(f"sink found no free port in {_START_ATTEMPTS} attempts")


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line of process, or "" if it exits or stays silent until timeout."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode(errors="replace").splitlines()[0] if buffer else ""
