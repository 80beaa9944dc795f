"""kombu's SQLAlchemy transport (the embedded default's broker), surviving write errors.

kombu's channel keeps one SQLAlchemy session for its whole life and never closes it.
When a write fails (a full disk: "database or disk is full"), the session is left in
a failed transaction, holding its pooled connection; kombu reports a connection error,
the worker reconnects with a new channel and a new session, and the old one is never
given back. After fifteen such reconnects the pool (5 + 10 overflow) is exhausted, the
next checkout waits 30 s and raises "QueuePool limit … reached", which is no
connection error: the worker's main process exits. This channel rolls back and drops
its session on any database error and when it closes, so a full disk costs failed
polls, never the worker.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES, _transport_cache
from kombu.transport import sqlalchemy as kombu_sql
from sqlalchemy.exc import SQLAlchemyError

# The broker URL prefixes that select kombu's SQLAlchemy transport ("sqla+sqlite:///…").
ALIASES = ("sqla", "sqlalchemy")
TRANSPORT = "worker.sql_transport:Transport"


class Channel(kombu_sql.Channel):
    """A channel that starts a fresh session after any failed database call."""

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        return self._fresh_after_error(super()._get, queue)

    # kombu's own two base classes disagree on this signature; this is the sqlalchemy one.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._fresh_after_error(super()._put, queue, payload, **kwargs)

    def _size(self, queue: Any) -> Any:
        return self._fresh_after_error(super()._size, queue)

    def _purge(self, queue: Any) -> Any:
        return self._fresh_after_error(super()._purge, queue)

    def close(self) -> None:
        """Close the channel and give its connection back to the pool."""
        try:
            super().close()  # type: ignore[no-untyped-call]
        finally:
            self._drop_session()

    def _fresh_after_error(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except SQLAlchemyError:
            self._drop_session()
            raise

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.rollback()
        except SQLAlchemyError:
            pass  # the connection is broken: closing it is all that is left
        finally:
            session.close()


class Transport(kombu_sql.Transport):
    """kombu's SQLAlchemy transport with the channel above."""

    Channel = Channel
    # A failed pool checkout is a broker problem to retry, not a reason to exit.
    connection_errors = (*kombu_sql.Transport.connection_errors, SQLAlchemyError)  # type: ignore[assignment]


def install() -> None:
    """Make the `sqla+` URL prefix mean this transport in this process.

    kombu picks a transport by the URL's prefix through its alias table; Celery reads the
    URL from CELERY_BROKER_URL (Hebdo's own name for it) before any setting, so the
    alias is where the choice can be made. Idempotent.
    """
    for alias in ALIASES:
        TRANSPORT_ALIASES[alias] = TRANSPORT
        _transport_cache.pop(alias, None)
