"""Database plumbing: the declarative base, engines and sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout so that the
web app, the worker processes and the CLI can share one file safely.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Dialect, Engine, Result
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose constraint names are stable across migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# How long a SQLite connection waits for another's write lock before it gives up.
SQLITE_BUSY_TIMEOUT_SECONDS = 30


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so
        # a claim (UPDATE … RETURNING) takes the write lock at once.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_begin(conn: Connection) -> None:
    # A read-only session (see read_only) takes no write lock: in WAL mode it never
    # waits for a writer, nor makes one wait.
    read_only_ = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only_ else "BEGIN IMMEDIATE")


READ_ONLY = "hebdo_read_only"


def read_only(session: Session) -> Session:
    """Open the session's transaction as a reader (before its first statement).

    On SQLite a plain BEGIN instead of BEGIN IMMEDIATE: the public click redirect
    reads one row and must not queue behind the workers' and the event buffer's writes.
    The session must not write.
    """
    session.connection(execution_options={READ_ONLY: True})
    return session


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


_T = TypeVar("_T")
_SQLITE_BUSY = 5  # the primary result code; extended ones (BUSY_SNAPSHOT...) share its low byte
_FIRST_PAUSE, _LONGEST_PAUSE = 50e-6, 2e-3


def retry_while_locked(
    attempt: Callable[[], _T], timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS
) -> _T:
    """`attempt()`, tried again after short pauses while SQLite says the database is locked.

    For one autocommitted statement on a SQLite connection whose own busy timeout is
    off (PRAGMA busy_timeout=0), where a refusal leaves nothing done and the statement
    can simply run again. SQLite's own busy handler sleeps 1, 2, 5, 10 ms and more
    between tries: the send loop's marks hold the write lock some 100 µs, so two
    workers marking side by side lost about a millisecond each time they met (one
    mark in eight). These pauses start at 50 µs and double up to 2 ms; after
    `timeout` seconds of refusals the last one is raised.
    """
    deadline: float | None = None
    pause = _FIRST_PAUSE
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != _SQLITE_BUSY:
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def affected_rows(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE/INSERT … SELECT (typed access to rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


# SQLite's SQLITE_FULL and PostgreSQL's class 53 (insufficient resources: disk_full,
# out_of_memory …) and the kernel's ENOSPC as the drivers word them.
_DISK_FULL_SQLSTATES = ("53100",)
_DISK_FULL_WORDS = ("database or disk is full", "no space left on device", "could not extend file")


def is_disk_full(error: BaseException) -> bool:
    """Whether a database error says the server's disk is full (SQLite or PostgreSQL)."""
    original = getattr(error, "orig", error)
    if getattr(original, "sqlstate", None) in _DISK_FULL_SQLSTATES:
        return True
    if getattr(original, "sqlite_errorname", None) == "SQLITE_FULL":
        return True
    text = str(original).lower()
    return any(words in text for words in _DISK_FULL_WORDS)


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once, then run straight on a DBAPI connection.

    For the statement the send loop runs after every message: SQLAlchemy's execution
    path (parameter processing, events, the result object) cost several times the
    UPDATE itself there. The SQL is the statement's own compilation for the dialect
    and every value goes through its column type's bind processor, as in a Session.
    """

    sql: str
    order: tuple[str, ...] | None  # parameter names in order for positional styles
    fixed: dict[str, Any]  # values written in the statement, already processed
    processors: dict[str, Callable[[Any], Any]]  # for the values given per run
    server_prepared: bool  # psycopg: parsed and planned once by the server

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> DriverStatement:
        """Compile `statement` for `dialect`, with its fixed values processed once."""
        compiled: Any = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        fixed: dict[str, Any] = {}
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                if process is not None:
                    processors[name] = process
            else:
                fixed[name] = process(bind.value) if process is not None else bind.value
        order = tuple(compiled.positiontup) if compiled.positional else None
        return cls(compiled.string, order, fixed, processors, dialect.name == "postgresql")

    def run(self, driver: Any, **values: Any) -> int:
        """Execute on `driver` (a DBAPI connection); the number of rows it matched."""
        return int(self._execute(driver, values).rowcount or 0)

    def first(self, driver: Any, **values: Any) -> tuple[Any, ...] | None:
        """Execute on `driver`; the first row of the result as the driver gives it, or None."""
        row = self._execute(driver, values).fetchone()
        return None if row is None else tuple(row)

    def _execute(self, driver: Any, values: dict[str, Any]) -> Any:
        params = dict(self.fixed)
        for name, value in values.items():
            process = self.processors.get(name)
            params[name] = process(value) if process is not None else value
        args = params if self.order is None else tuple(params[n] for n in self.order)
        if self.server_prepared:
            return driver.execute(self.sql, args, prepare=True)
        return driver.execute(self.sql, args)
