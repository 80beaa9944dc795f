"""docker-compose.yml is checked here since no Docker engine runs on this machine."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_names_every_service_the_readme_mentions() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "mailcatcher"} <= set(services)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production with docker compose", 1)[1].split("\n## ", 1)[0]
    mentioned = set(re.findall(r"`(\w+)`", section)) & set(services) | {
        name for name in re.findall(r"^\| `?(\w+)`? \|", section, re.M) if name in services
    }
    assert mentioned == set(services), "README's compose section must describe every service"


def test_compose_services_use_the_documented_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["worker"]["command"][:2] == ["hebdo", "worker"]
    assert services["beat"]["command"] == ["hebdo", "beat"]
    assert services["migrate"]["command"] == ["hebdo", "init"]
    assert "service.app:create_app()" in services["web"]["command"]
    env = compose["x-hebdo"]["environment"]
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "SMTP_URL", "SECRET_KEY", "BASE_URL"):
        assert name in env
    assert "${SECRET_KEY" in env["SECRET_KEY"], "the secret comes from the environment"
