"""pytest plugin with the real services: `pytest_plugins = ["tests.support.fixtures"]`.

PostgreSQL and Redis start once per session (per xdist worker); the SMTP server is fresh
for every test so recorded messages and failure knobs never leak between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import free_port
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.smtp import RecordingSmtpServer

__all__ = ["free_port", "postgres_cluster", "redis_server", "smtp_server"]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster; create databases with .create_database(name)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server; connect with .url."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[RecordingSmtpServer]:
    """An in-process SMTP server on a free port that records what it receives."""
    with RecordingSmtpServer() as server:
        yield server
