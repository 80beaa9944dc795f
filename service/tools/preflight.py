"""`hebdo check`: what a real deployment needs, checked before the first send.

Each check is a plain function returning findings (error, warning or ok, a stable code,
one sentence). `run` chains them; the CLI prints them, exits 1 on an error, and `hebdo
web` / `hebdo worker` print the fast ones as warnings when they start.

"Production-like" means the database is PostgreSQL: there the embedded defaults (an http
BASE_URL, a .localhost bounce domain, the generated secret) are errors, not warnings.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import smtplib
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
import redis
import sqlalchemy
import sqlalchemy.exc
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from service.config import Settings, SmtpRelay
from service.mail import dkim_keys
from service.models import Newsletter
from service.tools import migrate


class Level(enum.StrEnum):
    """How bad a finding is: an error fails `hebdo check` (exit 1)."""

    ERROR = "error"
    WARNING = "warning"
    OK = "ok"


@dataclass(frozen=True)
class Finding:
    """One line of the preflight."""

    level: Level
    code: str
    message: str
    detail: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"level": str(self.level), "code": self.code, "message": self.message, **(
            {"detail": self.detail} if self.detail else {}
        )}  # fmt: skip


def production_like(settings: Settings) -> bool:
    """Whether the deployment runs on PostgreSQL (the production layout)."""
    return settings.database_url.startswith("postgresql")


def _default_level(settings: Settings) -> Level:
    # An embedded default is fine on a laptop and wrong in production.
    return Level.ERROR if production_like(settings) else Level.WARNING


# Second-level labels under which a country's registrations sit (example.co.uk): a small
# stand-in for the Public Suffix List, enough for the alignment hint.
_SECOND_LEVELS = {"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "gv"}


def organisational_domain(domain: str) -> str:
    """The registered domain of a host name (news.example.org → example.org), approximately."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(one: str, other: str) -> bool:
    """DMARC's relaxed alignment: the same organisational domain."""
    return organisational_domain(one) == organisational_domain(other)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_unreachable_ip(host: str) -> bool:
    # Loopback, private and link-local addresses: no reader outside reaches them.
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _is_local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return (
        host == "localhost"
        or host.endswith((".localhost", ".local", ".internal"))
        or ("." not in host)
    )


def check_base_url(settings: Settings) -> list[Finding]:
    """BASE_URL is https (RFC 8058 one-click unsubscribe needs it) and not a local name."""
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    findings = []
    if parts.scheme != "https":
        findings.append(Finding(
            _default_level(settings), "base-url-https",
            f"BASE_URL {settings.base_url} is not https: mailbox providers ignore one-click "
            "unsubscribe (RFC 8058) over http; set BASE_URL=https://…",
        ))  # fmt: skip
    if _is_unreachable_ip(host) or (not _is_ip(host) and _is_local_name(host)):
        findings.append(Finding(
            _default_level(settings), "base-url-host",
            f"BASE_URL points at {host or 'no host'}: readers cannot reach the links in "
            "their mail; set it to the site's public address",
        ))  # fmt: skip
    if not findings:
        findings.append(Finding(Level.OK, "base-url", f"BASE_URL {settings.base_url} is https"))
    return findings


def check_bounce_domain(settings: Settings, sender_domains: Iterable[str]) -> list[Finding]:
    """BOUNCE_DOMAIN is a real domain, aligned with every newsletter's sender domain."""
    domain = settings.bounce_domain.lower().rstrip(".")
    if _is_ip(domain) or _is_local_name(domain):
        return [Finding(
            _default_level(settings), "bounce-domain",
            f"BOUNCE_DOMAIN {domain} is not a public domain: bounces and the mailto "
            "unsubscribe go nowhere; set BOUNCE_DOMAIN to a domain whose MX reaches Hebdo",
        )]  # fmt: skip
    findings = [
        Finding(
            Level.WARNING,
            "bounce-alignment",
            f"BOUNCE_DOMAIN {domain} is not aligned with the sender domain {sender}: SPF "
            "cannot pass DMARC for it (use the sender's domain or a subdomain of it)",
        )
        for sender in sorted(set(sender_domains))
        if not aligned(domain, sender)
    ]
    return findings or [Finding(Level.OK, "bounce-domain", f"BOUNCE_DOMAIN {domain}")]


def check_secret_key(settings: Settings) -> list[Finding]:
    """SECRET_KEY is set in the environment, not the one generated in the instance folder."""
    generated = settings.instance_path / "secret_key"
    try:
        from_file = generated.read_text().strip() == settings.secret_key
    except OSError:
        from_file = False
    if from_file:
        return [Finding(
            _default_level(settings), "secret-key",
            f"SECRET_KEY is the one generated in {generated}: set SECRET_KEY in the "
            "environment, the same on every machine, or links signed by one fail on another",
        )]  # fmt: skip
    if len(settings.secret_key) < 32:
        return [Finding(
            Level.WARNING, "secret-key",
            "SECRET_KEY is shorter than 32 characters: use `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`",
        )]  # fmt: skip
    return [Finding(Level.OK, "secret-key", "SECRET_KEY comes from the environment")]


def check_database(settings: Settings) -> tuple[list[Finding], list[str]]:
    """The database answers and is at the migrations' head; returns the sender domains too."""
    problem = migrate.schema_problem(settings.database_url)
    if problem is not None:
        return [Finding(Level.ERROR, "database", problem)], []
    engine = _reading_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            senders = connection.scalars(select(Newsletter.sender_email)).all()
        where = engine.url.render_as_string(hide_password=True)
        message = f"the database at {where} answers, schema at {migrate.head_revision()}"
        return [Finding(Level.OK, "database", message)], [_domain_of(s) for s in senders]
    except sqlalchemy.exc.SQLAlchemyError as error:  # pragma: no cover - raced shutdown
        return [Finding(Level.ERROR, "database", f"the database failed: {error}")], []
    finally:
        engine.dispose()


def _reading_engine(url: str) -> Engine:
    # Plain reads: service.db's engines begin SQLite transactions IMMEDIATE (a write lock).
    return sqlalchemy.create_engine(url, poolclass=NullPool)


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2].lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def check_broker(settings: Settings, *, timeout: float = 5.0) -> list[Finding]:
    """The Celery broker answers: Redis PING, or the SQL broker's database."""
    url = settings.broker_url
    shown = _hide_password(url)
    if url.startswith(("redis://", "rediss://")):
        try:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        except redis.RedisError as error:
            return [Finding(Level.ERROR, "broker", f"the broker {shown} does not answer: {error}")]
        return [Finding(Level.OK, "broker", f"the broker {shown} answers PING")]
    if url.startswith("sqla+"):
        database = url.removeprefix("sqla+")
        if database.startswith("sqlite:///"):
            path = Path(database.removeprefix("sqlite:///"))
            folder = path.parent
            if not path.exists():
                if folder.is_dir() and _writable(folder):
                    return [Finding(Level.OK, "broker", f"the SQL broker {path} will be created")]
                return [Finding(
                    Level.ERROR, "broker", f"the SQL broker {path} cannot be created in {folder}"
                )]  # fmt: skip
        engine = _reading_engine(database)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = " ".join(str(getattr(error, "orig", None) or error).split())
            return [Finding(Level.ERROR, "broker", f"the SQL broker {shown} fails: {reason}")]
        finally:
            engine.dispose()
        return [Finding(Level.OK, "broker", f"the SQL broker {shown} answers")]
    return [Finding(Level.WARNING, "broker", f"the broker {shown} is of a kind not checked here")]


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_smtp_relay(relay: SmtpRelay, *, timeout: float = 10.0) -> Finding:
    """The relay answers EHLO; with credentials it must offer STARTTLS (or be smtps)."""
    client: smtplib.SMTP
    try:
        if relay.use_ssl:
            client = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
        try:
            code, _reply = client.ehlo()
            starttls = client.has_extn("starttls")
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except (smtplib.SMTPException, OSError) as error:
        reason = str(error) or type(error).__name__
        return Finding(
            Level.ERROR, "smtp", f"the SMTP relay {relay.label} does not answer: {reason}"
        )
    if code != 250:
        return Finding(Level.ERROR, "smtp", f"the SMTP relay {relay.label} refused EHLO ({code})")
    wants_tls = relay.username is not None or relay.starttls
    if wants_tls and not relay.use_ssl and not starttls:
        return Finding(
            Level.ERROR,
            "smtp-starttls",
            f"the SMTP relay {relay.label} does not offer STARTTLS: the password (or the "
            "mail) would cross the network in clear; use smtps:// or another relay",
        )
    tls = "implicit TLS" if relay.use_ssl else ("STARTTLS offered" if starttls else "no TLS")
    return Finding(Level.OK, "smtp", f"the SMTP relay {relay.label} answers EHLO ({tls})")


def check_smtp(settings: Settings, *, timeout: float = 10.0) -> list[Finding]:
    """Every relay of SMTP_URL answers (each is tried in order when sending)."""
    if not settings.smtp_relays:
        return [Finding(Level.ERROR, "smtp", "SMTP_URL names no relay")]
    return [check_smtp_relay(relay, timeout=timeout) for relay in settings.smtp_relays]


@dataclass(frozen=True)
class DkimSetup:
    """A configured key and the record that publishes it."""

    key_path: Path
    record: dkim_keys.PublicRecord


def check_dkim(
    settings: Settings, sender_domains: Iterable[str] = ()
) -> tuple[list[Finding], list[DkimSetup]]:
    """The DKIM keys are readable and valid; each finding carries the record to publish."""
    names = {
        "DKIM_SELECTOR": settings.dkim_selector,
        "DKIM_DOMAIN": settings.dkim_domain,
        "DKIM_PRIVATE_KEY_PATH": settings.dkim_private_key_path,
    }
    if not any(names.values()):
        return [Finding(
            Level.WARNING, "dkim",
            "DKIM is off: messages go out unsigned and big mailbox providers may refuse "
            "them; `hebdo dkim generate --selector S --domain D` makes a key",
        )], []  # fmt: skip
    missing = [name for name, value in names.items() if not value]
    if missing:
        return [
            Finding(Level.ERROR, "dkim", f"DKIM is half configured: set {', '.join(missing)}")
        ], []
    selector, domain = str(settings.dkim_selector), str(settings.dkim_domain).lower().rstrip(".")
    keys = [(selector, Path(str(settings.dkim_private_key_path)), "rsa")]
    if settings.dkim_ed25519_selector or settings.dkim_ed25519_private_key_path:
        if not (settings.dkim_ed25519_selector and settings.dkim_ed25519_private_key_path):
            return [Finding(
                Level.ERROR, "dkim",
                "an Ed25519 DKIM key needs both DKIM_ED25519_SELECTOR and "
                "DKIM_ED25519_PRIVATE_KEY_PATH",
            )], []  # fmt: skip
        keys.append(
            (settings.dkim_ed25519_selector, settings.dkim_ed25519_private_key_path, "ed25519")
        )
    findings: list[Finding] = []
    setups: list[DkimSetup] = []
    for selector, path, algorithm in keys:
        try:
            key = dkim_keys.load_private_key(path)
        except (OSError, ValueError, TypeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            findings.append(Finding(
                Level.ERROR, "dkim-key", f"the DKIM key {path} cannot be used: {reason}"
            ))  # fmt: skip
            continue
        record = dkim_keys.public_record(key, selector, domain)
        if record.algorithm != algorithm:
            findings.append(Finding(
                Level.ERROR, "dkim-key",
                f"the DKIM key {path} is {record.algorithm}, expected an {algorithm} key",
            ))  # fmt: skip
            continue
        size = (
            f"RSA {key.key_size} bits"
            if not isinstance(key, ed25519.Ed25519PrivateKey)
            else "Ed25519"
        )
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < dkim_keys.RSA_BITS:
            level, advice = Level.WARNING, f" (under {dkim_keys.RSA_BITS} bits: make a new one)"
            if key.key_size < 1024:
                level, advice = Level.ERROR, " (verifiers refuse keys under 1024 bits)"
        else:
            level, advice = Level.OK, ""
        findings.append(Finding(
            level, "dkim-key",
            f"the DKIM key {path} is valid ({size}){advice}; publish: {record.zone_line}",
            {"record": record.zone_line, "name": record.name, "value": record.value},
        ))  # fmt: skip
        setups.append(DkimSetup(path, record))
    findings.extend(
        Finding(
            Level.WARNING,
            "dkim-alignment",
            f"DKIM_DOMAIN {domain} is not aligned with the sender domain {sender}: the "
            "signature cannot pass DMARC for it",
        )
        for sender in sorted(set(sender_domains))
        if not aligned(domain, sender)
    )
    return findings, setups


def make_resolver(
    nameservers: Sequence[str] | None = None, port: int = 53, timeout: float = 5.0
) -> dns.resolver.Resolver:
    """The system's resolver, or one asking the given servers (tests run their own)."""
    resolver = dns.resolver.Resolver(configure=nameservers is None)
    if nameservers is not None:
        resolver.nameservers = list(nameservers)
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


class _LookupFailed(Exception):
    pass


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The TXT values at name, each record's strings joined; [] when there are none."""
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise _LookupFailed(f"{name}: {error}") from error
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def check_spf(resolver: dns.resolver.Resolver, domain: str, role: str) -> Finding:
    """One SPF record (v=spf1) at domain."""
    records = [v for v in _txt(resolver, domain) if v.lower().split(" ", 1)[0] == "v=spf1"]
    if not records:
        return Finding(
            Level.ERROR, "spf", f"no SPF record at {domain} ({role}): publish a TXT "
            '"v=spf1 include:<your relay> -all" naming the relay\'s servers',
        )  # fmt: skip
    if len(records) > 1:
        return Finding(
            Level.ERROR, "spf", f"{len(records)} SPF records at {domain}: receivers treat "
            "that as an error (RFC 7208 4.5); merge them into one",
        )  # fmt: skip
    return Finding(Level.OK, "spf", f"SPF at {domain} ({role}): {records[0]}")


def check_dkim_record(resolver: dns.resolver.Resolver, setup: DkimSetup) -> Finding:
    """The DKIM record at selector._domainkey.domain publishes the configured key."""
    name = setup.record.name
    values = [v for v in _txt(resolver, name) if "p=" in v]
    if not values:
        return Finding(
            Level.ERROR, "dkim-dns", f"no DKIM record at {name}: publish {setup.record.zone_line}",
            {"record": setup.record.zone_line},
        )  # fmt: skip
    published = [dkim_keys.record_tags(v).get("p", "") for v in values]
    if setup.record.public_key not in published:
        return Finding(
            Level.ERROR, "dkim-dns",
            f"the DKIM record at {name} holds another key than {setup.key_path} (its p= "
            f"differs): publish {setup.record.zone_line}",
            {"record": setup.record.zone_line},
        )  # fmt: skip
    return Finding(Level.OK, "dkim-dns", f"the DKIM record at {name} matches {setup.key_path}")


def check_dmarc(resolver: dns.resolver.Resolver, domain: str) -> Finding:
    """A DMARC policy at _dmarc.domain, or at its organisational domain's."""
    for where in dict.fromkeys((domain, organisational_domain(domain))):
        records = [v for v in _txt(resolver, f"_dmarc.{where}") if v.lower().startswith("v=dmarc1")]
        if records:
            policy = dkim_keys.record_tags(records[0]).get("p", "?")
            return Finding(Level.OK, "dmarc", f"DMARC at _dmarc.{where} for {domain}: p={policy}")
    return Finding(
        Level.ERROR, "dmarc", f"no DMARC record at _dmarc.{domain}: publish at least "
        f'_dmarc.{domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"',
    )  # fmt: skip


def check_dns(
    settings: Settings,
    sender_domains: Iterable[str],
    dkim_setups: Iterable[DkimSetup],
    resolver: dns.resolver.Resolver,
) -> list[Finding]:
    """SPF of each sender (and of the bounce domain), the DKIM records, DMARC of each sender."""
    senders = sorted(set(sender_domains))
    bounce = settings.bounce_domain.lower().rstrip(".")
    lookups: list[Callable[[], Finding]] = [
        partial(check_spf, resolver, domain, "sender domain") for domain in senders
    ]
    if bounce not in senders and not (_is_ip(bounce) or _is_local_name(bounce)):
        lookups.append(partial(check_spf, resolver, bounce, "BOUNCE_DOMAIN, the envelope sender"))
    lookups += [partial(check_dkim_record, resolver, setup) for setup in dkim_setups]
    lookups += [partial(check_dmarc, resolver, domain) for domain in senders]
    findings: list[Finding] = []
    for lookup in lookups:
        try:
            findings.append(lookup())
        except _LookupFailed as failed:
            findings.append(Finding(Level.ERROR, "dns", f"DNS lookup failed: {failed}"))
    if not senders:
        findings.append(Finding(
            Level.WARNING, "dns", "no newsletter yet: SPF and DMARC of the sender not checked"
        ))  # fmt: skip
    return findings


def run(
    settings: Settings,
    *,
    network: bool = True,
    dns_lookups: bool = False,
    resolver: dns.resolver.Resolver | None = None,
    timeout: float = 10.0,
) -> list[Finding]:
    """Every check; network=False leaves out the SMTP relays (what web and worker start do)."""
    database, senders = check_database(settings)
    findings = [
        *check_base_url(settings),
        *check_secret_key(settings),
        *database,
        *check_bounce_domain(settings, senders),
        *check_broker(settings, timeout=min(timeout, 5.0)),
    ]
    if network:
        findings += check_smtp(settings, timeout=timeout)
    dkim, setups = check_dkim(settings, senders)
    findings += dkim
    if dns_lookups:
        findings += check_dns(settings, senders, setups, resolver or make_resolver(timeout=timeout))
    return findings


def failed(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error."""
    return any(f.level is Level.ERROR for f in findings)
