"""The embedded broker's channel gives its database connection back (worker/sql_transport.py).

kombu's own channel kept its session, and the pooled connection under it, after an error
and after closing: a worker that reconnected fifteen times exhausted the pool and exited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.transport import sqlalchemy as kombu_sql
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from worker import sql_transport

# Fail fast where the pool is exhausted, instead of SQLAlchemy's 30 s wait.
OPTIONS = {"pool_timeout": 0.5}


def _reconnect(connection: Connection, times: int) -> None:
    for _ in range(times):
        channel: Any = connection.channel()  # type: ignore[no-untyped-call]
        channel.session.execute(text("SELECT 1"))  # a transaction left open, as after an error
        channel.close()


def test_closing_a_channel_gives_its_connection_back(tmp_path: Path) -> None:
    sql_transport.install()
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    with Connection(url, transport_options=OPTIONS) as c:  # type: ignore[no-untyped-call]
        assert isinstance(c.transport, sql_transport.Transport)
        _reconnect(c, 40)  # more than the pool's 5 + 10
        queue = c.SimpleQueue("hebdo")
        queue.put({"edition": 7})
        assert queue.get(timeout=5).payload == {"edition": 7}
        queue.close()


def test_kombus_own_channel_exhausts_the_pool(tmp_path: Path) -> None:
    # The failure the transport fixes, kept as a test so an upgrade that fixes kombu shows.
    url = f"sqlite:///{tmp_path / 'stock.sqlite'}"
    stock = Connection(url, transport=kombu_sql.Transport, transport_options=OPTIONS)  # type: ignore[no-untyped-call]
    with stock as c:
        with pytest.raises(PoolTimeout):
            _reconnect(c, 40)
        kombu_sql.Channel._engines.pop(url, None)  # a class-level cache: leave it clean
