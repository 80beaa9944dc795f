"""Rate-limit windows are purged once no limit can count them, and only then."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from service import queue, ratelimit
from service.models import RateWindow

NOW = 1_700_000_000


def _keys(session: Session) -> set[str]:
    return set(session.scalars(select(RateWindow.key)))


def test_purge_expired_drops_only_windows_older_than_twice_the_longest_limit(
    backend: str, session: Session
) -> None:
    session.execute(
        insert(RateWindow),
        [
            # An hour-long signup window that ended more than an hour ago: gone.
            {"key": "signup:ip:203.0.113.7", "window_start": NOW - 3 * 3600, "count": 3},
            # A login bucket inside the last two hours: still counted by nobody, but kept.
            {"key": "login:account:a@example.org", "window_start": NOW - 3600, "count": 1},
            # This hour's data-link window: counted now.
            {"key": "data-links:7", "window_start": NOW - 60, "count": 1},
            # The delivery limiter's marks are in microseconds: never touched by the purge.
            {"key": "hebdo:limits:slot", "window_start": (NOW - 5 * 3600) * 1_000_000, "count": 0},
        ],
    )
    session.commit()

    assert ratelimit.purge_expired(session, now=NOW) == 1
    session.commit()

    assert _keys(session) == {
        "login:account:a@example.org",
        "data-links:7",
        "hebdo:limits:slot",
    }


def test_beat_runs_the_purge_every_hour_through_a_registered_task() -> None:
    from service.config import Settings
    from worker.celery_app import app, celery_config
    from worker.tasks import maintenance

    schedule = celery_config(Settings.from_env({"SECRET_KEY": "x" * 32}))["beat_schedule"]
    entry = next(e for e in schedule.values() if e["task"] == queue.PURGE_RATE_WINDOWS)
    assert entry["schedule"] == 3600.0
    assert maintenance.purge_rate_windows.name == queue.PURGE_RATE_WINDOWS
    assert queue.PURGE_RATE_WINDOWS in app.tasks
