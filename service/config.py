"""Settings: the one place that reads the environment.

Every variable has a default that runs the embedded setup (SQLite, a broker in a
SQLite file, the local SMTP sink) from the instance folder inside the checkout.
Production sets DATABASE_URL, CELERY_BROKER_URL, SMTP_URL, SECRET_KEY and BASE_URL.

An instance folder may hold an `env` file of KEY=VALUE lines, read under the
environment (a variable set in the environment wins): `hebdo demo` writes the
sink's SMTP_URL and its BASE_URL there, so a command pointed at the demo's
folder (`hebdo --instance instance/demo …`) reaches the demo's sink.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SmtpRelay:
    """One SMTP relay parsed from an smtp:// or smtps:// URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_ssl: bool = False  # smtps:// (implicit TLS, port 465)
    starttls: bool = False  # smtp://...?starttls=1 or any relay with credentials
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpRelay:
        """Parse smtp://user:pass@host:port?starttls=1 (smtps:// for implicit TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP_URL must start with smtp:// or smtps://, got {url!r}")
        query = dict(item.split("=", 1) for item in parts.query.split("&") if "=" in item)
        use_ssl = parts.scheme == "smtps"
        username = unquote(parts.username) if parts.username else None
        starttls_default = "1" if username and not use_ssl else "0"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if use_ssl else 25),
            username=username,
            password=unquote(parts.password) if parts.password else None,
            use_ssl=use_ssl,
            starttls=query.get("starttls", starttls_default) in ("1", "true", "yes"),
            timeout=float(query.get("timeout", "30")),
        )

    @property
    def label(self) -> str:
        """host:port, safe to show (no credentials)."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Typed configuration, built once and passed explicitly."""

    secret_key: str
    database_url: str
    broker_url: str
    base_url: str
    instance_path: Path
    smtp_relays: tuple[SmtpRelay, ...]
    bounce_domain: str = "hebdo.localhost"
    batch_size: int = 200  # deliveries claimed per worker task
    lease_seconds: int = 300  # a claimed row is re-claimable after this
    max_attempts: int = 5
    retry_base_seconds: float = 60.0  # first wait after a temporary failure (then doubled)
    rate_per_second: float = 0.0  # 0 = unlimited
    rate_per_hour: int = 0
    max_connections: int = 4  # concurrent SMTP connections across all workers
    redis_url: str | None = None  # shared rate limits; None = the database
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_path: Path | None = None
    # An optional second signature with Ed25519 (RFC 8463), beside the RSA one.
    dkim_ed25519_selector: str | None = None
    dkim_ed25519_private_key_path: Path | None = None
    email_templates_path: Path = field(default=PROJECT_ROOT / "templates" / "email")
    maildir_path: Path | None = None  # where the embedded sink keeps mail (Outbox page)
    api_rate_per_minute: int = 600  # JSON API requests a minute per token
    proxies: int = 0  # reverse proxies in front of the web app (trust their X-Forwarded-*)
    # Bounce webhooks of relays that report over HTTP; each is off (404) until configured.
    mailgun_signing_key: str | None = None
    postmark_webhook_secret: str | None = None  # the password of the webhook URL's Basic auth
    sendgrid_public_key: str | None = None  # base64 DER of the Event Webhook's ECDSA key
    ses_topic_arns: tuple[str, ...] = ()  # SNS topics whose notifications are believed
    # Where SNS signing certificates may come from (tests point it at their own server).
    sns_cert_url_pattern: str = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+\.pem"
    testing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment (or the given mapping)."""
        env = os.environ if env is None else env
        instance = Path(env.get("HEBDO_INSTANCE", str(PROJECT_ROOT / "instance"))).resolve()
        env = {**read_instance_env(instance), **env}
        database_url = env.get("DATABASE_URL", f"sqlite:///{instance / 'hebdo.sqlite'}")
        broker_url = env.get("CELERY_BROKER_URL", f"sqla+sqlite:///{instance / 'broker.sqlite'}")
        smtp_urls = env.get("SMTP_URL", "smtp://127.0.0.1:2525")
        redis_url = env.get("REDIS_URL") or (
            broker_url if broker_url.startswith(("redis://", "rediss://")) else None
        )
        dkim_key = env.get("DKIM_PRIVATE_KEY_PATH")
        ed25519_key = env.get("DKIM_ED25519_PRIVATE_KEY_PATH")
        settings = cls(
            secret_key=env.get("SECRET_KEY") or _instance_secret(instance),
            database_url=_normalise_database_url(database_url),
            broker_url=broker_url,
            base_url=env.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
            instance_path=instance,
            smtp_relays=tuple(SmtpRelay.from_url(u.strip()) for u in smtp_urls.split(",") if u),
            bounce_domain=env.get("BOUNCE_DOMAIN", "hebdo.localhost"),
            batch_size=int(env.get("HEBDO_BATCH_SIZE", "200")),
            lease_seconds=int(env.get("HEBDO_LEASE_SECONDS", "300")),
            max_attempts=int(env.get("HEBDO_MAX_ATTEMPTS", "5")),
            retry_base_seconds=float(env.get("HEBDO_RETRY_BASE_SECONDS", "60")),
            rate_per_second=float(env.get("HEBDO_RATE_PER_SECOND", "0")),
            rate_per_hour=int(env.get("HEBDO_RATE_PER_HOUR", "0")),
            max_connections=int(env.get("HEBDO_MAX_CONNECTIONS", "4")),
            redis_url=redis_url,
            dkim_selector=env.get("DKIM_SELECTOR"),
            dkim_domain=env.get("DKIM_DOMAIN"),
            dkim_private_key_path=Path(dkim_key) if dkim_key else None,
            dkim_ed25519_selector=env.get("DKIM_ED25519_SELECTOR"),
            dkim_ed25519_private_key_path=Path(ed25519_key) if ed25519_key else None,
            maildir_path=Path(env.get("HEBDO_MAILDIR", str(instance / "maildir"))),
            proxies=int(env.get("HEBDO_PROXIES", "0")),
            api_rate_per_minute=int(env.get("HEBDO_API_RATE_PER_MINUTE", "600")),
            mailgun_signing_key=env.get("MAILGUN_WEBHOOK_SIGNING_KEY") or None,
            postmark_webhook_secret=env.get("POSTMARK_WEBHOOK_SECRET") or None,
            sendgrid_public_key=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
            ses_topic_arns=tuple(
                arn.strip() for arn in env.get("SES_SNS_TOPIC_ARNS", "").split(",") if arn.strip()
            ),
            sns_cert_url_pattern=env.get("HEBDO_SNS_CERT_URL_PATTERN") or cls.sns_cert_url_pattern,
        )
        return replace(settings, **overrides) if overrides else settings


# The file in an instance folder whose KEY=VALUE lines are read under the environment.
INSTANCE_ENV_FILE = "env"


def read_instance_env(instance: Path) -> dict[str, str]:
    """The variables of `instance/env` (blank lines and # comments skipped), or none."""
    path = instance / INSTANCE_ENV_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in lines:
        name, equals, value = line.strip().partition("=")
        if equals and name and not name.startswith("#") and name != "HEBDO_INSTANCE":
            values[name.strip()] = value.strip()
    return values


def write_instance_env(instance: Path, values: Mapping[str, str]) -> Path:
    """Write `instance/env` (what `read_instance_env` reads back); returns its path."""
    path = instance / INSTANCE_ENV_FILE
    header = "# Read by every hebdo command run on this instance; the environment wins.\n"
    path.write_text(header + "".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def _normalise_database_url(url: str) -> str:
    # Heroku-style postgres:// URLs and bare postgresql:// both mean psycopg 3 here.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _instance_secret(instance: Path) -> str:
    # The embedded default keeps a random secret in the instance folder, so that
    # signed links survive restarts without a secret ever living in the repository.
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
