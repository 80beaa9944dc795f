"""SMTP transport: one reused connection, ordered fail-over, classified errors.

Only this module touches the network. Callers learn the outcome of each message
as a value or one of three exceptions: TemporaryFailure (4xx, a dropped
connection, a timeout: retry later), PermanentFailure (5xx: never retry), and
RelayUnavailable (no relay accepts connections: pause, don't burn retries).
"""

from __future__ import annotations

import smtplib
import ssl
from types import TracebackType

from service.config import SmtpRelay


class DeliveryError(Exception):
    """A message was not accepted; `code` is the SMTP reply code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    """Try again later (4xx reply, dropped connection, timeout)."""


class PermanentFailure(DeliveryError):
    """The relay refused this message for good (5xx reply)."""


class RelayUnavailable(DeliveryError):
    """No relay in the list accepts connections right now."""


class SmtpTransport:
    """Sends many messages over one SMTP connection, reconnecting when needed."""

    def __init__(self, relays: tuple[SmtpRelay, ...], local_hostname: str | None = None):
        if not relays:
            raise ValueError("at least one SMTP relay is required")
        self.relays = relays
        self.local_hostname = local_hostname
        self._client: smtplib.SMTP | None = None
        self.relay: SmtpRelay | None = None
        self.messages_on_connection = 0

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        errors = []
        for relay in self.relays:
            try:
                client = self._open(relay)
            except (OSError, smtplib.SMTPException) as exc:
                errors.append(f"{relay.label}: {exc}")
                continue
            self._client, self.relay, self.messages_on_connection = client, relay, 0
            return client
        raise RelayUnavailable("no SMTP relay reachable (" + "; ".join(errors) + ")")

    def _open(self, relay: SmtpRelay) -> smtplib.SMTP:
        client: smtplib.SMTP
        if relay.use_ssl:
            client = smtplib.SMTP_SSL(
                relay.host,
                relay.port,
                local_hostname=self.local_hostname,
                timeout=relay.timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(
                relay.host, relay.port, local_hostname=self.local_hostname, timeout=relay.timeout
            )
        try:
            client.ehlo()
            if relay.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if relay.username:
                client.login(relay.username, relay.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def send(self, mail_from: str, rcpt_to: str, data: bytes) -> None:
        """Send one message; raise a DeliveryError subclass if it was not accepted."""
        client = self._client or self._connect()
        try:
            refused = client.sendmail(mail_from, [rcpt_to], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(rcpt_to, (None, b""))
            self._reset()
            raise _classify(code, reply) from exc
        except smtplib.SMTPResponseException as exc:
            # A 421 closes the session; other replies leave it usable after RSET.
            if exc.smtp_code == 421:
                self.close()
            else:
                self._reset()
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}") from exc
        if refused:  # cannot happen with one recipient, but never report a refusal as sent
            code, reply = refused[rcpt_to]
            raise _classify(code, reply)
        self.messages_on_connection += 1

    def _reset(self) -> None:
        if self._client is None:
            return
        try:
            self._client.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        """Say QUIT and drop the connection (quietly if it is already gone)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _classify(code: int | None, reply: bytes | str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{code} {text}".strip()
    if code is not None and 500 <= code < 600:
        return PermanentFailure(message, code)
    return TemporaryFailure(message, code)
