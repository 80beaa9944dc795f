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


def test_web_worker_and_beat_wait_for_the_migrations_and_healthy_services() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert "migrate" not in services["migrate"]["depends_on"]
    assert services["migrate"]["restart"] == "no"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(compose_text)
    env = compose["x-hebdo"]["environment"]
    # Neither has a default that would run production on an embedded value.
    for name in ("BASE_URL", "BOUNCE_DOMAIN", "SECRET_KEY"):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required from .env"
    example = (ROOT / ".env.example").read_text()
    documented = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{(\w+)", compose_text))
    assert used == set(documented), "every ${VAR} of the compose file is in .env.example"
    assert {"SECRET_KEY", "BASE_URL", "BOUNCE_DOMAIN", "SMTP_URL", "POSTGRES_PASSWORD"} <= used
    assert {name for name in used if name.startswith("DKIM_")} == {
        "DKIM_SELECTOR", "DKIM_DOMAIN", "DKIM_PRIVATE_KEY_PATH",
        "DKIM_ED25519_SELECTOR", "DKIM_ED25519_PRIVATE_KEY_PATH",
    }  # fmt: skip
    assert documented["BASE_URL"].startswith("https://")
    assert documented["SECRET_KEY"] == "", "no secret in the example"
    # Each variable has its explanation: a comment line right above it or its block.
    blocks = example.split("\n\n")
    for name in documented:
        block = next(b for b in blocks if re.search(rf"^{name}=", b, re.M))
        assert block.lstrip().startswith("#"), f"{name} has no comment"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_readme_says_how_to_create_the_first_admin() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production with docker compose", 1)[1].split("\n## ", 1)[0]
    assert "cp .env.example .env" in section
    assert "docker compose run --rm web hebdo editors create you@example.org --role admin" in (
        section
    )
    assert "hebdo check" in section
