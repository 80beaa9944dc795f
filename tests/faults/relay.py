"""An SMTP relay that misbehaves the ways real relays do, for the fault table.

It is the recording server of tests/support/smtp.py (aiosmtpd in a thread of the test
process, every accepted message kept) with the misbehaviours of issue 15 added:
refusing connections, hanging in DATA, 421 for a while, dropping the connection after
the final dot, greylisting, and a STARTTLS whose handshake fails.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.tools.sink import DATA_SIZE_LIMIT
from tests.support.smtp import RecordingSmtpServer, _RecordingHandler

__all__ = ["FaultyRelay", "make_certificate"]


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made by the openssl command."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=127.0.0.1/O={name}", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class _FaultyHandler(_RecordingHandler):
    def __init__(self, owner: FaultyRelay) -> None:
        super().__init__(owner)
        self._relay = owner

    async def handle_MAIL(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if time.monotonic() < self._relay.shutting_down_until:
            return "421 4.3.2 Service shutting down, try again later"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._relay._greylisted(address):
            return "450 4.7.1 Greylisted, please try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802 (aiosmtpd looks hooks up by this name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._relay._take_hang():
            # The client sent the message and waits for the reply that never comes;
            # after its timeout it gives up, and the relay drops the half-taken mail.
            await asyncio.sleep(self._relay.hang_seconds)
            if server.transport is not None:
                server.transport.close()
            await asyncio.get_running_loop().create_future()
        return await super().handle_DATA(server, session, envelope)


class FaultyRelay(RecordingSmtpServer):
    """RecordingSmtpServer plus the misbehaviours of the fault table."""

    def __init__(self) -> None:
        super().__init__()
        self._handler = _FaultyHandler(self)
        self._fault_lock = threading.Lock()
        # Every MAIL FROM gets 421 until this time.monotonic().
        self.shutting_down_until = 0.0
        self._greylist = False
        self._seen: set[str] = set()
        self._hangs = 0
        self.hang_seconds = 0.0
        self.tls_context: ssl.SSLContext | None = None

    def answer_421_for(self, seconds: float) -> None:
        """Answer every MAIL FROM with 421 for `seconds`, then recover."""
        self.shutting_down_until = time.monotonic() + seconds

    def greylist(self) -> None:
        """450 on the first RCPT TO of each address, accept it on the next try."""
        self._greylist = True

    def hang_in_data(self, n: int, seconds: float) -> None:
        """The next n messages: no reply after the final dot for `seconds`, then hang up."""
        with self._fault_lock:
            self._hangs += n
            self.hang_seconds = seconds

    def offer_starttls(self, cert: Path, key: Path) -> None:
        """Offer STARTTLS with this certificate on the next connections (restarts the listener)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.tls_context = context
        self.refuse_connections()
        self.accept_connections()

    def _greylisted(self, address: str) -> bool:
        if not self._greylist:
            return False
        with self._fault_lock:
            if address.lower() in self._seen:
                return False
            self._seen.add(address.lower())
            return True

    def _take_hang(self) -> bool:
        with self._fault_lock:
            if self._hangs <= 0:
                return False
            self._hangs -= 1
            return True

    def _start_controller(self, port: int) -> Controller:
        if self.tls_context is None:
            return super()._start_controller(port)
        controller = Controller(
            self._handler,
            hostname=self.host,
            port=port,
            server_hostname="hebdo-test-smtp.localhost",
            decode_data=False,
            enable_SMTPUTF8=self.smtputf8,
            data_size_limit=DATA_SIZE_LIMIT,
            tls_context=self.tls_context,
        )
        try:
            controller.start()
        except BaseException:
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        return controller
