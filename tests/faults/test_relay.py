"""The relay misbehaves: every way a real SMTP server can fail a sender.

The relay's behaviour does not depend on the stack, so these rows run on the
production one (PostgreSQL + Redis) only.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.models import DeliveryStatus, EditionStatus
from tests.faults.harness import (
    count,
    edition_detail,
    edition_status,
    hebdo,
    seed,
    tally,
    wait_progress,
    wait_sent,
    wait_until,
    workers,
)
from tests.faults.relay import FaultyRelay, make_certificate

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("backend", ["postgres"])]

# A relay that does not answer within this many seconds has failed the message.
SMTP_TIMEOUT = 3
# Temporary failures come back after 2-4 s (HEBDO_RETRY_BASE_SECONDS in conftest's
# FAULT_ENV), picked up by the beat's sweep every 15 s: a generous deadline for the
# shared, busy test machine.
RETRY_DEADLINE = 240


def _with_timeout(env: dict[str, str], relay: FaultyRelay, query: str = "") -> dict[str, str]:
    return {**env, "SMTP_URL": f"{relay.url}?timeout={SMTP_TIMEOUT}{query}"}


def test_relay_refuses_connections_for_a_while(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    edition_id = seed(sessions)
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        wait_progress(sessions, edition_id, 0.3)
        smtp_server.refuse_connections()
        down = time.monotonic()
        wait_until(
            "the send paused for the relay",
            lambda: edition_status(sessions, edition_id) == EditionStatus.PAUSED,
            60,
        )
        assert "relay unavailable" in edition_detail(sessions, edition_id)
        time.sleep(10)
        smtp_server.accept_connections()
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
        recovered = time.monotonic() - down
    tally(
        "relay refuses connections for 10 s",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
        note="the send pauses itself and the beat resumes it (no editor needed)",
    ).assert_holds()


def test_relay_hangs_in_data_past_the_timeout(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    env = _with_timeout(env, smtp_server)
    edition_id = seed(sessions)
    smtp_server.hang_in_data(5, seconds=SMTP_TIMEOUT * 3)
    started = time.monotonic()
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
    tally(
        f"relay hangs after DATA past the {SMTP_TIMEOUT} s timeout (5 messages)",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=time.monotonic() - started,
    ).assert_holds()


def test_relay_answers_421_for_a_while(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    edition_id = seed(sessions)
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        wait_progress(sessions, edition_id, 0.3)
        smtp_server.answer_421_for(10)
        down = time.monotonic()
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
        recovered = time.monotonic() - down
    tally(
        "relay answers 421 for 10 s",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
    ).assert_holds()


def test_relay_drops_the_connection_after_the_final_dot(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    edition_id = seed(sessions)
    # The relay queued the message but its "250" never reached us: the one case where
    # a reader may get two copies, and both carry the same Message-ID.
    smtp_server.hang_up_after_data(3, keep_message=True)
    started = time.monotonic()
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
    row = tally(
        "relay drops the connection after the final dot (3 messages)",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=time.monotonic() - started,
        note="each dropped reply is sent again: the reader has 2 copies, same Message-ID",
    )
    row.assert_holds()
    assert row.duplicates_same_id == 3


def test_relay_greylists_every_first_try(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    edition_id = seed(sessions)
    smtp_server.greylist()
    started = time.monotonic()
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
    row = tally(
        "relay greylists (450 on every first try)",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=time.monotonic() - started,
    )
    row.assert_holds()
    assert count(sessions, edition_id, DeliveryStatus.FAILED) == 0


def test_starttls_handshake_fails_until_the_relay_is_fixed(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    trusted_cert, trusted_key = make_certificate(tmp_path, "trusted")
    stranger_cert, stranger_key = make_certificate(tmp_path, "stranger")
    # The workers trust one certificate; the relay shows another: every handshake fails.
    env = {**_with_timeout(env, smtp_server, "&starttls=1"), "SSL_CERT_FILE": str(trusted_cert)}
    smtp_server.offer_starttls(stranger_cert, stranger_key)
    edition_id = seed(sessions)
    with workers(env, tmp_path, 2) as crew:
        hebdo(env, "send", str(edition_id))
        broken = time.monotonic()
        wait_until(
            "the send paused on the failed handshake",
            lambda: edition_status(sessions, edition_id) == EditionStatus.PAUSED,
            60,
        )
        detail = edition_detail(sessions, edition_id)
        assert "relay unavailable" in detail
        assert "certificate" in detail.lower(), detail
        assert count(sessions, edition_id, DeliveryStatus.SENT) == 0
        assert smtp_server.messages == []
        smtp_server.offer_starttls(trusted_cert, trusted_key)  # the relay's operator fixes it
        wait_sent(sessions, edition_id, timeout=RETRY_DEADLINE, logs=crew[0].log)
        recovered = time.monotonic() - broken
    tally(
        "STARTTLS handshake fails (untrusted certificate), then fixed",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
        note="nothing goes out in clear: the send pauses, then resumes by itself",
    ).assert_holds()
