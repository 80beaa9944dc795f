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
from service.tools import migrate

# An id on the command line: past the database's INTEGER it is a usage error, not a crash.
ID = click.IntRange(min=0, max=DB_INT_MAX)


class CliContext:
    """Lazily built resources, so `hebdo --help` touches nothing."""

    @cached_property
    def settings(self) -> Settings:
        """Settings from the environment; a value that cannot be read is one sentence."""
        try:
            return Settings.from_env()
        except ValueError as bad:  # SMTP_URL of another scheme, HEBDO_BATCH_SIZE=abc …
            raise click.ClickException(f"the configuration cannot be read: {bad}") from bad

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory for the configured database, once its schema is checked.

        A database without Hebdo's tables (a new instance, another folder) or with an
        older schema stops the command with one sentence and status 1, before any
        query can fail with a traceback.
        """
        problem = migrate.schema_problem(self.settings.database_url)
        if problem is not None:
            raise click.ClickException(problem)
        return session_factory(make_engine(self.settings.database_url))

    def require_schema(self) -> None:
        """Stop with one sentence unless the database is at the migrations' head."""
        _ = self.sessions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed on success (the CLI owns the transaction)."""
        with self.sessions() as session, session.begin():
            yield session
