"""Housekeeping on a schedule: tables that would otherwise only grow."""

from __future__ import annotations

from service import queue, ratelimit
from worker import runtime
from worker.celery_app import app


@app.task(name=queue.PURGE_RATE_WINDOWS)
def purge_rate_windows() -> int:
    """Delete the rate-limit windows (signups, logins, data links) no limit counts any more."""
    with runtime.sessions()() as session, session.begin():
        return ratelimit.purge_expired(session)
