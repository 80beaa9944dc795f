"""Waiting, with a deadline, for what real workers do in other processes."""

from __future__ import annotations

import time

from flask import Flask
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Edition, EditionStatus, Event
from service.tracking.buffer import EventBuffer


def flush_events(app: Flask) -> int:
    """Write the app's buffered pixel, click and feedback events now; how many were stored."""
    buffer: EventBuffer = app.extensions["hebdo.events"]
    return buffer.flush()


def wait_for_events(
    sessions: sessionmaker[Session], count: int, *where: ColumnElement[bool], timeout: float = 15
) -> None:
    """Poll until `count` events (matching `where`) are stored by the buffer's thread."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        with sessions() as session:
            found = session.scalar(select(func.count()).select_from(Event).where(*where)) or 0
        if found >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{found} events stored within {timeout}s, expected {count}")


def wait_for_status(
    sessions: sessionmaker[Session],
    edition_id: int,
    status: EditionStatus = EditionStatus.SENT,
    timeout: float = 90,
) -> Edition:
    """Poll the edition until it has `status`; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            edition = session.get(Edition, edition_id)
            assert edition is not None
            if edition.status == status:
                return edition
        time.sleep(0.2)
    raise AssertionError(f"edition {edition_id} not {status.value} within {timeout}s")
