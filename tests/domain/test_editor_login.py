"""The login rule of editors.log_in on SQLite and PostgreSQL: the sliding lock, who shares
a count, parallel guesses, and how long a session lives."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.models import EditorSession, utcnow
from service.team import editors

EMAIL = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
WRONG = "pas-le-bon-mot"
T0 = 1_900_000_040.0  # 20 s into a minute: failures land in whole-minute buckets


@pytest.fixture
def editor_id(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        return editors.create(session, EMAIL, PASSWORD).id


def _try(
    sessions: sessionmaker[Session],
    password: str,
    at: float,
    *,
    email: str = EMAIL,
    address: str = "192.0.2.10",
) -> editors.LoginResult:
    with sessions.begin() as session:
        return editors.log_in(session, email, password, address=address, now=at)


def test_the_lock_slides_with_the_failures_and_lifts_after_15_minutes(
    backend: str, sessions: sessionmaker[Session], editor_id: int
) -> None:
    for k in range(3):
        assert _try(sessions, WRONG, T0 + k).retry_after == 0
    for k in range(2):
        assert _try(sessions, WRONG, T0 + 600 + k).retry_after == 0

    locked = _try(sessions, PASSWORD, T0 + 610)
    assert locked.token == ""
    # The oldest failures (bucket starting at T0 - 20) stop counting 15 minutes on.
    assert locked.retry_after == int(T0 - 20 + 900 - (T0 + 610))

    # Three failures have left the window; two remain, so the right password is heard.
    assert _try(sessions, PASSWORD, T0 + 900).token


def test_a_success_forgives_the_accounts_failures_not_the_addresss(
    backend: str, sessions: sessionmaker[Session], editor_id: int
) -> None:
    for _ in range(editors.FAILURES_PER_ACCOUNT - 1):
        _try(sessions, WRONG, T0)
    assert _try(sessions, PASSWORD, T0 + 1).token
    for _ in range(editors.FAILURES_PER_ACCOUNT):
        assert _try(sessions, WRONG, T0 + 2).retry_after == 0
    assert _try(sessions, WRONG, T0 + 3).retry_after > 0

    # The address has 8 failures against it; 12 more (on other accounts) lock it.
    for n in range(editors.FAILURES_PER_ADDRESS - 2 * editors.FAILURES_PER_ACCOUNT + 1):
        assert _try(sessions, WRONG, T0 + 4, email=f"x{n}@exemple.fr").retry_after == 0
    assert _try(sessions, WRONG, T0 + 5, email="autre@exemple.fr").retry_after > 0


def test_one_ipv6_machine_counts_as_one_address(sessions: sessionmaker[Session]) -> None:
    for n in range(editors.FAILURES_PER_ADDRESS):
        address = f"2001:db8:1:2::{n + 1:x}"
        assert _try(sessions, WRONG, T0, email=f"x{n}@exemple.fr", address=address).retry_after == 0
    refused = _try(sessions, WRONG, T0, email="y@exemple.fr", address="2001:db8:1:2:ffff::9")
    assert refused.retry_after > 0
    elsewhere = _try(sessions, WRONG, T0, email="y@exemple.fr", address="2001:db8:1:3::1")
    assert elsewhere.retry_after == 0
    assert editors.client_network("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert editors.client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert editors.client_network("not an address") == "unknown"


@pytest.mark.slow
def test_parallel_guesses_never_check_more_passwords_than_the_limit(
    backend: str, sessions: sessionmaker[Session], editor_id: int
) -> None:
    results: list[editors.LoginResult] = []
    start = threading.Barrier(12)

    def guess(n: int) -> None:
        start.wait()
        results.append(_try(sessions, f"{WRONG}-{n}", time.time(), address=f"192.0.2.{n}"))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 12
    heard = [r for r in results if r.retry_after == 0]
    assert len(heard) == editors.FAILURES_PER_ACCOUNT


def test_a_session_ends_after_a_week_unused_or_a_month_in_all(
    backend: str, sessions: sessionmaker[Session], editor_id: int
) -> None:
    with sessions.begin() as session:
        token = _try(sessions, PASSWORD, T0).token
        assert editors.session_editor(session, token) is not None
        idle = utcnow() + editors.SESSION_IDLE - timedelta(minutes=1)
        assert editors.session_editor(session, token, now=idle) is not None  # and touched
    with sessions.begin() as session:
        later = idle + editors.SESSION_IDLE - timedelta(minutes=1)
        assert editors.session_editor(session, token, now=later) is not None
        too_old = utcnow() + editors.SESSION_LIFETIME
        assert editors.session_editor(session, token, now=too_old) is None
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(EditorSession)) == 0
        assert editors.session_editor(session, "not-a-token") is None
        assert editors.session_editor(session, 42) is None
