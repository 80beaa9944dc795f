"""Waiting, with a deadline, for what real workers do in other processes."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from service.models import Edition, EditionStatus


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
