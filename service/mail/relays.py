"""The sending setup as an admin sees it: the SMTP relays (never their passwords), a test
message through one relay, and DKIM keys made into the instance folder.

Everything here is read from Settings (the environment); nothing is stored. The web page
(service/web/sending_settings.py) only translates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from service.addresses import InvalidAddress, for_sending
from service.config import Settings, SmtpRelay
from service.mail import dkim_keys
from service.mail.transport import DeliveryError, SmtpTransport
from service.text import one_line

MASK = "••••"


@dataclass(frozen=True)
class RelayView:
    """One relay of SMTP_URL, safe to show: the password is only ever the mask."""

    index: int
    host: str
    port: int
    tls: str  # "implicit" (smtps://), "starttls" or "none"
    username: str | None
    password: str | None  # MASK when one is set, else None


def relay_views(settings: Settings) -> list[RelayView]:
    """The configured relays, in fail-over order, with their passwords masked."""
    return [
        RelayView(
            index=index,
            host=relay.host,
            port=relay.port,
            tls="implicit" if relay.use_ssl else ("starttls" if relay.starttls else "none"),
            username=relay.username,
            password=MASK if relay.password else None,
        )
        for index, relay in enumerate(settings.smtp_relays)
    ]


@dataclass(frozen=True)
class RelayTestResult:
    """What one relay answered to a test message."""

    relay: str  # host:port
    accepted: bool
    reply: str  # the relay's refusal, or "" when it accepted


class UnknownRelay(LookupError):
    """No relay has this index."""


def test_relay(
    settings: Settings,
    relay_index: int,
    to_address: str,
    *,
    subject: str,
    body: str,
) -> RelayTestResult:
    """Send one short message through this relay alone (no fail-over) to to_address.

    The subject and body come from the caller, in the reader's language.
    """
    if not 0 <= relay_index < len(settings.smtp_relays):
        raise UnknownRelay(relay_index)
    relay: SmtpRelay = settings.smtp_relays[relay_index]
    try:
        recipient = for_sending(to_address)
    except InvalidAddress as bad:
        return RelayTestResult(relay.label, False, str(bad))
    sender = f"hebdo@{settings.bounce_domain}"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = one_line(f"{subject} ({relay.label})", limit=998)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid("relay-test", domain=settings.bounce_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    transport = SmtpTransport((relay,))
    try:
        transport.send(sender, recipient, message.as_bytes())
    except DeliveryError as refused:
        return RelayTestResult(relay.label, False, _without_secret(str(refused), relay))
    finally:
        transport.close()
    return RelayTestResult(relay.label, True, "")


def _without_secret(text: str, relay: SmtpRelay) -> str:
    # A relay's error text never carries the password; this makes sure of it.
    return text.replace(relay.password, MASK) if relay.password else text


@dataclass(frozen=True)
class GeneratedKey:
    """A key written into the instance folder, and what to do with it."""

    path: Path
    record: dkim_keys.PublicRecord
    environment: tuple[tuple[str, str], ...]  # the variables to set, in order


def generate_key(
    settings: Settings, selector: str, domain: str, *, ed25519_key: bool = False
) -> GeneratedKey:
    """Make a key into INSTANCE/dkim/ (mode 0600, never replacing a file).

    BadKeyRequest for a bad selector or domain, FileExistsError when the file exists.
    """
    selector = dkim_keys.check_selector(selector.strip())
    domain = dkim_keys.check_domain(domain)
    suffix = ".ed25519" if ed25519_key else ""
    path = (settings.instance_path / "dkim" / f"{selector}.{domain}{suffix}.pem").resolve()
    key = dkim_keys.generate(ed25519_key=ed25519_key)
    dkim_keys.write_private_key(key, path)
    record = dkim_keys.public_record(key, selector, domain)
    if ed25519_key:
        environment = (
            ("DKIM_ED25519_SELECTOR", selector),
            ("DKIM_ED25519_PRIVATE_KEY_PATH", str(path)),
            ("DKIM_DOMAIN", domain),
        )
    else:
        environment = (
            ("DKIM_SELECTOR", selector),
            ("DKIM_DOMAIN", domain),
            ("DKIM_PRIVATE_KEY_PATH", str(path)),
        )
    return GeneratedKey(path, record, environment)
