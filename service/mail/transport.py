"""SMTP transport: one reused connection, ordered fail-over, classified errors.

When the relay offers PIPELINING (RFC 2920) the envelope goes in one write (MAIL,
RCPT and DATA together) and the three replies are read after it: one round trip
before the content instead of three. A caller sending several messages can also
have the next message's envelope written with this message's content (RFC 2920
3.1: "the actual transfer of message content is explicitly allowed to be the first
'command' in a group"), so the relay answers both in one turn.

Only this module touches the network. Callers learn the outcome of each message
as a value or one of three exceptions: TemporaryFailure (4xx, a dropped
connection, a timeout: retry later), PermanentFailure (5xx: never retry), and
RelayUnavailable (no relay accepts connections: pause, don't burn retries).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol

from service.addresses import InvalidAddress, for_sending
from service.config import SmtpRelay

_ENHANCED_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")

Stage = Literal["connect", "mail", "rcpt", "data"]

SMTPUTF8_REFUSED = "the relay does not accept SMTPUTF8"


# Asked right before the content goes: the next message's (sender, recipient) to announce
# in the same write, or None.
NextEnvelope = Callable[[], "tuple[str, str] | None"]


class Transport(Protocol):
    """What the senders (send loop, notices, confirmations, test sends) need of SMTP.

    `send` is `start` then `finish`. The send loop calls them apart to build the next
    message while the relay reads this one; whoever calls `start` calls `finish` before
    anything else on the transport.
    """

    def send(self, mail_from: str, rcpt_to: str, data: bytes) -> None: ...

    def start(
        self,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        *,
        dot_safe: bool = False,
        then: NextEnvelope | None = None,
    ) -> None: ...

    def finish(self) -> None: ...

    def abandon_announced(self) -> None: ...

    def close(self) -> None: ...


class DeliveryError(Exception):
    """A message was not accepted; `code` is the SMTP reply code when there is one."""

    def __init__(self, message: str, code: int | None = None, stage: Stage | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.stage = stage  # the SMTP command that was refused, when known


class TemporaryFailure(DeliveryError):
    """Try again later (4xx reply, dropped connection, timeout)."""

    @property
    def relay_full(self) -> bool:
        """True when the relay says its own storage is full, whoever the message is for.

        That is the relay's state, not the reader's: the send loop pauses the edition
        on a run of these instead of spending every reader's attempts on them.
        """
        return system_full(enhanced_status(str(self)), self.code)


class PermanentFailure(DeliveryError):
    """The relay refused this message for good (5xx reply)."""

    @property
    def hard_bounce(self) -> bool:
        """True when the recipient's mailbox itself is bad: suppress the address.

        Only a refusal at RCPT names the recipient; a refusal of the message
        (552 too big, 554 content or policy at DATA) says nothing about the
        mailbox. An enhanced status code decides when the relay gives one:
        5.1.x (bad mailbox, domain or syntax) and 5.2.1 (account disabled)
        are hard, 5.7.x policy blocks and 5.2.2 (mailbox full) are not.
        Without one (or with the uninformative x.0.0) the basic code decides:
        550, 551 and 553.
        """
        if self.stage != "rcpt" or self.code is None:
            return False
        return mailbox_is_bad(enhanced_status(str(self)), self.code)


class Smtputf8Unsupported(PermanentFailure):
    """The address needs SMTPUTF8 (a non-ASCII local part) and the relay does not offer it.

    Fails this one delivery: it says nothing of the mailbox (never suppress the
    address) nor of the relay's health (the other readers go on).
    """

    @property
    def hard_bounce(self) -> bool:
        """Never: the mailbox may be fine, another relay could deliver to it."""
        return False


class RelayUnavailable(DeliveryError):
    """No relay in the list accepts connections right now."""


class _StaleConnection(Exception):
    """The connection died before the message started: nothing reached the relay."""


def mailbox_is_bad(enhanced: tuple[int, int, int] | None, code: int | None) -> bool:
    """Whether a refusal naming the recipient means its mailbox is bad (see hard_bounce).

    Shared with the bounce reports that come back later (service/tracking/inbound.py), so
    a refusal at RCPT and a DSN for the same reason suppress the same addresses.
    """
    if enhanced is not None and enhanced[1:] != (0, 0):
        return enhanced[0] == 5 and (enhanced[1] == 1 or enhanced[1:] == (2, 1))
    return code in (550, 551, 553)


def system_full(enhanced: tuple[int, int, int] | None, code: int | None) -> bool:
    """Whether a refusal says the relay's mail system is out of storage.

    RFC 3463's 4.3.1 "mail system full" says so; so does a bare 452 (RFC 5321:
    "insufficient system storage") without an informative enhanced code. 452 4.2.2
    (this mailbox is full) and 452 4.5.3 (too many recipients) are about one
    message, not the relay.
    """
    if enhanced is not None and enhanced[1:] != (0, 0):
        return enhanced[0] == 4 and enhanced[1:] == (3, 1)
    return code == 452


def enhanced_status(reply: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code after the basic code ("550 5.1.1 …"), if any."""
    code, _, text = reply.partition(" ")
    match = _ENHANCED_STATUS.match(text if code.isdigit() else reply)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])


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
        self._awaiting_verdict = False  # start() handed content over; finish() reads the reply
        # The next message's envelope, written with the last content, its replies unread.
        self._announced: tuple[str, str] | None = None

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
        raise RelayUnavailable(
            "no SMTP relay reachable (" + "; ".join(errors) + ")", stage="connect"
        )

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
        """Send one message; raise a DeliveryError subclass if it was not accepted.

        Internationalised domains go out in their ASCII form; an address whose
        local part is not ASCII goes out with SMTPUTF8, or fails with
        Smtputf8Unsupported when the relay does not offer it.
        """
        self.start(mail_from, rcpt_to, data)
        self.finish()

    def start(
        self,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        *,
        dot_safe: bool = False,
        then: NextEnvelope | None = None,
    ) -> None:
        """Hand one message to the relay, leaving its final reply to `finish`.

        Raises what `send` raises for everything up to the content (envelope refused,
        no relay); over a pipelining relay the reply to the content itself is read by
        `finish`, so the caller can work while the relay reads the message.
        `dot_safe` says no line of `data` starts with a dot (mime.personalise's
        messages): the search for lines to stuff is skipped. `then`, called right
        before the content is written, may name the next message's sender and
        recipient: its envelope goes in the same write, and the next `start` for those
        addresses reads its replies instead of sending it again. A next message that
        does not come (the connection is closed instead) is never given content.
        """
        if self._awaiting_verdict:
            raise RuntimeError("finish() the message in flight before starting another")
        size = len(data)  # RFC 1870's SIZE is the message's, before stuffing
        if not dot_safe:
            data = _dot_stuffed(data)
        mail_from = _envelope_address(mail_from, "mail")
        rcpt_to = _envelope_address(rcpt_to, "rcpt")
        announced, self._announced = self._announced, None
        if announced is not None and self._client is not None:
            if announced != (mail_from, rcpt_to):
                self._drop()  # announced for another message: it must never get this content
            else:
                try:
                    self._after_envelope(self._client, data, then)
                except _StaleConnection:
                    self.close()  # the announced envelope got no answer: start afresh
                else:
                    return
        if self._client is not None:
            try:
                self._transact(self._client, mail_from, rcpt_to, data, size, then)
            except _StaleConnection:
                # Relays close idle connections; the message never started, so
                # reconnecting and sending it now is no retry at all.
                self.close()
            else:
                return
        try:
            self._transact(self._connect(), mail_from, rcpt_to, data, size, then)
        except _StaleConnection as exc:
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}", stage="mail") from exc

    def _transact(
        self,
        client: smtplib.SMTP,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        size: int,
        then: NextEnvelope | None,
    ) -> None:
        if not _PLAIN_ADDRESS.fullmatch(rcpt_to) and smtplib.quoteaddr(rcpt_to) != f"<{rcpt_to}>":
            # smtplib would parse it and send to what it finds ("not an address" → <not>):
            # another mailbox than the row names. Refused before the transaction starts.
            raise PermanentFailure(f"not a valid address: {rcpt_to!r}", stage="rcpt")
        options = [f"SIZE={size}"] if client.has_extn("size") else []
        if not (mail_from.isascii() and rcpt_to.isascii()):
            if not client.has_extn("smtputf8"):
                if not mail_from.isascii():  # our own sender: every message would fail
                    raise PermanentFailure(SMTPUTF8_REFUSED + " (sender address)", stage="mail")
                raise Smtputf8Unsupported(SMTPUTF8_REFUSED, stage="rcpt")
            options.append("SMTPUTF8")
        if client.has_extn("pipelining"):
            try:
                client.send(_envelope(mail_from, rcpt_to, options))
            except OSError as exc:  # the message never started
                raise _StaleConnection(str(exc) or type(exc).__name__) from exc
            self._after_envelope(client, data, then)
            return
        try:
            code, reply = _mail(client, mail_from, options)
        except OSError as exc:
            raise _StaleConnection(str(exc) or type(exc).__name__) from exc
        if code == 421:
            raise _StaleConnection(_text(code, reply))
        stage: Stage = "mail"
        try:
            if code != 250:
                raise self._refused(code, reply, stage)
            stage = "rcpt"
            code, reply = _rcpt(client, rcpt_to)
            if code not in (250, 251):
                raise self._refused(code, reply, stage)
            stage = "data"
            code, reply = _data(client, data)
            if code != 250:
                raise self._refused(code, reply, stage)
        except smtplib.SMTPDataError as exc:  # the DATA command itself was refused
            raise self._refused(exc.smtp_code, exc.smtp_error, stage) from exc
        except OSError as exc:  # includes timeouts and smtplib's disconnect errors
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}", stage=stage) from exc
        self.messages_on_connection += 1

    def _after_envelope(self, client: smtplib.SMTP, data: bytes, then: NextEnvelope | None) -> None:
        """Read the replies to a written envelope, then write the content (and the next)."""
        try:
            mail = client.getreply()
        except OSError as exc:  # no reply at all: the message never started
            raise _StaleConnection(str(exc) or type(exc).__name__) from exc
        if mail[0] == 421:
            raise _StaleConnection(_text(*mail))
        stage: Stage = "rcpt"
        try:
            rcpt = client.getreply()
            stage = "data"
            data_reply = client.getreply()
            accepted = mail[0] == 250 and rcpt[0] in (250, 251)
            if data_reply[0] == 354 and not accepted:
                # RFC 2920 3.1: a relay that took DATA after refusing the envelope gets
                # an empty message, which has no recipient to go to.
                client.send(b".\r\n")
                client.getreply()
            if mail[0] != 250:
                raise self._refused(*mail, "mail")
            if rcpt[0] not in (250, 251):
                raise self._refused(*rcpt, "rcpt")
            if data_reply[0] != 354:
                raise self._refused(*data_reply, "data")
            following = _announceable(then() if then is not None else None)
            _send_content(client, data, _envelope(*following, []) if following is not None else b"")
        except OSError as exc:  # includes timeouts and smtplib's disconnect errors
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}", stage=stage) from exc
        self._awaiting_verdict = True
        self._announced = following

    def finish(self) -> None:
        """The relay's reply to the message `start` handed over; raises as `send` does."""
        if not self._awaiting_verdict:
            return  # no message in flight (or it was answered inside start)
        self._awaiting_verdict = False
        client = self._client
        if client is None:  # closed meanwhile: the reply is lost with the connection
            raise TemporaryFailure("connection lost before the relay's reply", stage="data")
        try:
            code, reply = client.getreply()
        except OSError as exc:  # includes timeouts and smtplib's disconnect errors
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}", stage="data") from exc
        if code != 250:
            if code != 421 and self._announced is not None:
                # The transaction ended with the reply; an RSET now would reach the relay
                # after the announced DATA, as content.
                raise _classify(code, reply, "data")
            raise self._refused(code, reply, "data")
        self.messages_on_connection += 1

    def _refused(self, code: int, reply: bytes | str, stage: Stage) -> DeliveryError:
        # A 421 closes the session; other replies leave it usable after RSET.
        if code == 421:
            self.close()
        else:
            self._reset()
        return _classify(code, reply, stage)

    def _reset(self) -> None:
        if self._client is None:
            return
        try:
            self._client.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        """Say QUIT and drop the connection (quietly if it is already gone).

        With an announced envelope still open the connection is dropped without QUIT,
        which the relay would take as content after its DATA: a transaction cut before
        its final dot delivers nothing (RFC 5321 4.1.1.4).
        """
        if self._announced is not None:
            self._drop()
            return
        self._awaiting_verdict = False
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def abandon_announced(self) -> None:
        """The message announced by `start`'s `then` will not follow: end its transaction.

        Only the transport knows whether that envelope was written (it declines one it
        cannot announce, `_announceable`): when it was, the connection is dropped, since
        only an unfinished transaction delivers nothing; when it was not, the connection
        stays, with nothing open on it.
        """
        if self._announced is not None:
            self._drop()

    def _drop(self) -> None:
        """Close the socket with no goodbye: a transaction left open delivers nothing."""
        self._awaiting_verdict = False
        self._announced = None
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _envelope(mail_from: str, rcpt_to: str, options: list[str]) -> bytes:
    """MAIL, RCPT and DATA as one pipelined group."""
    extra = "".join(f" {option}" for option in options)
    return (
        f"MAIL FROM:{_quoted(mail_from)}{extra}\r\nRCPT TO:{_quoted(rcpt_to)}\r\nDATA\r\n"
    ).encode("utf-8" if "SMTPUTF8" in options else "ascii")


def _announceable(addresses: tuple[str, str] | None) -> tuple[str, str] | None:
    """The next envelope as it can be announced: plain ASCII addresses, or none at all.

    Anything that needs SMTPUTF8, parsing or refusing goes the usual way when its turn
    comes (then unannounced); so does every SIZE, unknown until the message is built.
    """
    if addresses is None:
        return None
    try:
        mail_from, rcpt_to = (for_sending(address) for address in addresses)
    except InvalidAddress:
        return None
    if not (_PLAIN_ADDRESS.fullmatch(mail_from) and _PLAIN_ADDRESS.fullmatch(rcpt_to)):
        return None
    if not (mail_from.isascii() and rcpt_to.isascii()):
        return None
    return mail_from, rcpt_to


def _envelope_address(address: str, stage: Stage) -> str:
    try:
        return for_sending(address)
    except InvalidAddress as exc:
        raise PermanentFailure(f"cannot send to {address!r}: {exc}", stage=stage) from exc


# An address smtplib's quoteaddr() would return unchanged inside <>: the envelope
# addresses Hebdo builds. Others take smtplib's slower path through the email parser.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def _quoted(address: str) -> str:
    """An envelope address in <>, as smtplib writes it."""
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _mail(client: smtplib.SMTP, sender: str, options: list[str]) -> tuple[int, bytes]:
    """smtplib's mail(), without parsing an address that needs no parsing."""
    if "SMTPUTF8" in options or not _PLAIN_ADDRESS.fullmatch(sender):
        return client.mail(sender, options)
    extra = "".join(f" {option}" for option in options) if client.does_esmtp else ""
    client.putcmd("mail", f"FROM:<{sender}>{extra}")
    return client.getreply()


def _rcpt(client: smtplib.SMTP, recipient: str) -> tuple[int, bytes]:
    """smtplib's rcpt(), without parsing an address that needs no parsing."""
    if not _PLAIN_ADDRESS.fullmatch(recipient):
        return client.rcpt(recipient)
    client.putcmd("rcpt", f"TO:<{recipient}>")
    return client.getreply()


_DOT_LINE = re.compile(rb"\n\.")  # searching is twice as fast as bytes.replace, and rarely finds


def _dot_stuffed(data: bytes) -> bytes:
    """The message with every line that starts with a dot doubled (RFC 5321 4.5.2).

    smtplib rewrites the whole message with a regular expression every time; on a
    newsletter-sized message that cost more CPU than building the message itself.
    Here a search finds whether any line needs it, and messages from mime.personalise,
    which never start a line with a dot, skip even that (start's dot_safe).
    """
    if not (data.startswith(b".") or _DOT_LINE.search(data)):
        return data
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _data(client: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """smtplib's data() for a message already dot-stuffed."""
    client.putcmd("data")
    code, reply = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    return _content(client, data)


def _content(client: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """The message after a 354, ended by the lone dot, and the relay's reply."""
    _send_content(client, data)
    return client.getreply()


def _send_content(client: smtplib.SMTP, stuffed: bytes, following: bytes = b"") -> None:
    """The dot-stuffed message after a 354, ended by the lone dot (the reply left to read).

    `following`: commands written in the same group after the content (the next envelope).
    """
    # One write with the final dot: a small write after a large one waits for its ACK
    # (Nagle), which costs more than copying the message once.
    end = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
    client.send(stuffed + end + following)


def _text(code: int | None, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}".strip() if code is not None else text.strip()


def _classify(code: int | None, reply: bytes | str, stage: Stage | None = None) -> DeliveryError:
    message = _text(code, reply)
    if code is not None and 500 <= code < 600:
        return PermanentFailure(message, code, stage)
    return TemporaryFailure(message, code, stage)
