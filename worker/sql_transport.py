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

from kombu.transport import sqlalchemy as kombu_sql
from sqlalchemy.exc import SQLAlchemyError

# The broker URL's prefix that selects kombu's own transport ("sqla+sqlite:///…").
PREFIX = "sqla+"
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


def celery_broker(broker_url: str) -> dict[str, str]:
    """Celery settings that route an `sqla+` broker URL through this transport.

    Celery prefers the CELERY_BROKER_URL environment variable (Hebdo's own name for it)
    to the broker_url setting, but not to the read and write URLs: those carry it.
    """
    if not broker_url.startswith(PREFIX):
        return {"broker_url": broker_url}
    url = broker_url[len(PREFIX) :]
    return {
        "broker_url": url,
        "broker_read_url": url,
        "broker_write_url": url,
        "broker_transport": TRANSPORT,
    }
