"""Settings come from the environment, with defaults for the embedded setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings, SmtpRelay


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEBDO_INSTANCE": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'hebdo.sqlite'}"
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.smtp_relays == (SmtpRelay("127.0.0.1", 2525),)
    assert settings.redis_url is None
    # The secret is generated once into the instance folder, never into the repository.
    assert settings.secret_key == (tmp_path / "secret_key").read_text()
    assert Settings.from_env({"HEBDO_INSTANCE": str(tmp_path)}).secret_key == settings.secret_key


def test_production_variables_are_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "HEBDO_INSTANCE": str(tmp_path),
            "DATABASE_URL": "postgres://u:p@db:5432/hebdo",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
            "SMTP_URL": "smtp://user:p%40ss@relay.example:587,smtps://backup.example",
            "SECRET_KEY": "k",
            "BASE_URL": "https://news.example/",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/hebdo"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.base_url == "https://news.example"
    first, backup = settings.smtp_relays
    assert (first.host, first.port, first.username, first.password) == (
        "relay.example", 587, "user", "p@ss",
    )  # fmt: skip
    assert first.starttls
    assert not first.use_ssl
    assert (backup.port, backup.use_ssl) == (465, True)


def test_a_bad_smtp_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="SMTP_URL must start with smtp://"):
        SmtpRelay.from_url("http://relay.example")


def test_proxy_headers_are_trusted_only_when_configured(tmp_path: Path) -> None:
    from flask import request

    from service.app import create_app

    env = {"HEBDO_INSTANCE": str(tmp_path), "SECRET_KEY": "k"}
    seen: list[str | None] = []
    for proxies in ("0", "1"):
        app = create_app(Settings.from_env({**env, "HEBDO_PROXIES": proxies}))
        app.before_request(lambda: seen.append(request.remote_addr))
        app.test_client().get("/login", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen == ["127.0.0.1", "203.0.113.9"]
