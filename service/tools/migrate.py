"""Apply the Alembic migrations: the only way a database gets its schema."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to the given revision (head by default)."""
    command.upgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against the migrations this code ships."""

    current: str | None  # the revision in alembic_version, None without that table
    head: str
    known: bool  # whether `current` is one of the shipped revisions

    @property
    def at_head(self) -> bool:
        """Whether the database has exactly the schema this code expects."""
        return self.current == self.head


@lru_cache(maxsize=1)
def _shipped_revisions() -> tuple[str, frozenset[str]]:
    # Reading the migration scripts is most of a check's cost: once per process.
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found")
    return head, frozenset(revision.revision for revision in script.walk_revisions())


def head_revision() -> str:
    """The newest revision of the shipped migrations."""
    return _shipped_revisions()[0]


def schema_state(engine: Engine) -> SchemaState:
    """Read the database's Alembic revision (raises sqlalchemy's OperationalError if the
    database does not answer)."""
    head, shipped = _shipped_revisions()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return SchemaState(current, head, current is None or current in shipped)


# How long the schema check waits for a PostgreSQL server that does not answer.
CONNECT_TIMEOUT_SECONDS = 10


def schema_problem(database_url: str) -> str | None:
    """One sentence saying why the database cannot be used as it is, or None if it can.

    Reads through an engine of its own: a plain read (no `BEGIN IMMEDIATE`, unlike
    service.db's engines), so the check never waits for a writer nor needs disk space.
    """
    url = sqlalchemy.engine.make_url(database_url)
    where = url.render_as_string(hide_password=True)
    database = url.database
    is_file = url.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    if is_file and not Path(str(database)).exists():  # connecting would create an empty file
        return f"the database at {where} has no Hebdo schema: run `hebdo init`"
    connect_args = (
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        if url.get_backend_name() == "postgresql"
        else {}
    )
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        state = schema_state(engine)
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())
        return f"the database at {where} does not answer: {reason}"
    finally:
        engine.dispose()
    if state.current is None:
        return f"the database at {where} has no Hebdo schema: run `hebdo init`"
    if not state.known:
        return (
            f"the database at {where} has schema revision {state.current}, newer than this "
            "version of Hebdo knows: upgrade Hebdo"
        )
    if not state.at_head:
        return (
            f"the database at {where} has an outdated Hebdo schema ({state.current}, "
            f"expected {state.head}): run `hebdo init`"
        )
    return None
