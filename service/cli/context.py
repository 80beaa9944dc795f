"""What every CLI command shares: settings and a session factory, made on demand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import click
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db import make_engine, session_factory
from service.numbers import DB_INT_MAX

# An id on the command line: past the database's INTEGER it is a usage error, not a crash.
ID = click.IntRange(min=0, max=DB_INT_MAX)


class CliContext:
    """Lazily built resources, so `hebdo --help` touches nothing."""

    @cached_property
    def settings(self) -> Settings:
        """Settings from the environment."""
        return Settings.from_env()

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory for the configured database."""
        return session_factory(make_engine(self.settings.database_url))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success (the CLI owns the transaction)."""
        with self.sessions() as session, session.begin():
            yield session
