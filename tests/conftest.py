"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL where asked),
settings pointing at real services, the Flask app and its client.

Tests that take `backend` run twice: on SQLite with the embedded broker, and on
PostgreSQL with Redis as the broker. A missing service fails the test loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from service.app import create_app
from service.config import Settings
from service.db import make_engine, session_factory
from service.tools.migrate import upgrade
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.smtp import RecordingSmtpServer

pytest_plugins = ["tests.support.fixtures"]

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster) -> str:
    """A database built once by the migrations, cloned for each test."""
    url = postgres_cluster.create_database("hebdo_template")
    upgrade(url)
    return "hebdo_template"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test on the embedded default and on the production stack."""
    return str(request.param)


@pytest.fixture
def env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: RecordingSmtpServer,
) -> dict[str, str]:
    """Environment variables of a Hebdo instance for this test (also given to workers)."""
    backend = request.getfixturevalue("backend") if "backend" in request.fixturenames else "sqlite"
    instance = tmp_path / "instance"
    instance.mkdir()
    values = {
        "HEBDO_INSTANCE": str(instance),
        "SECRET_KEY": "test-secret-" + tmp_path.name,
        "BASE_URL": "http://hebdo.test",
        "SMTP_URL": smtp_server.url,
        "HEBDO_LEASE_SECONDS": "30",
    }
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        template = request.getfixturevalue("postgres_template")
        name = f"hebdo_{next(_counter)}_{tmp_path.name[-12:].lower().replace('-', '_')}"
        values["DATABASE_URL"] = cluster.create_database(name, template=template)
        redis: RedisServer = request.getfixturevalue("redis_server")
        db_index = next(_counter) % 16
        values["CELERY_BROKER_URL"] = redis.url.rsplit("/", 1)[0] + f"/{db_index}"
        with_redis = values["CELERY_BROKER_URL"]
        values["REDIS_URL"] = with_redis
        # The 16 databases are reused along the run: start from an empty one, so no task
        # message or rate window an earlier test left behind is read as this test's.
        with redis_client.Redis.from_url(with_redis) as leftover:
            leftover.flushdb()
    else:
        values["DATABASE_URL"] = f"sqlite:///{instance / 'hebdo.sqlite'}"
        values["CELERY_BROKER_URL"] = f"sqla+sqlite:///{instance / 'broker.sqlite'}"
        upgrade(values["DATABASE_URL"])
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    """Settings of the test instance."""
    return Settings.from_env(env, testing=True)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """A session factory on the test database."""
    engine = make_engine(settings.database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for arranging and checking; commit what workers must see."""
    with sessions() as db_session:
        yield db_session


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The web app on the test instance (its event buffer is written and stopped after)."""
    web = create_app(settings)
    yield web
    web.extensions["hebdo.events"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (no cookies shared between tests)."""
    return app.test_client()
