"""Workers die: one SIGKILLed mid-batch, or all of them at once and started again later."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.faults.harness import (
    hebdo,
    seed,
    tally,
    wait_holding,
    wait_progress,
    wait_sent,
    workers,
)
from tests.faults.relay import FaultyRelay

# The issue asks for "a minute later"; the lease is 5 s, so any pause longer than that
# proves the same thing (rows come back only through the beat's sweep).
pytestmark = pytest.mark.faults

RESTART_AFTER = float(os.environ.get("HEBDO_FAULT_RESTART_AFTER", "20"))


def test_one_worker_killed_mid_batch(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    edition_id = seed(sessions)
    with workers(env, tmp_path, 2) as (survivor, doomed):
        hebdo(env, "send", str(edition_id))
        wait_progress(sessions, edition_id, 0.3)
        wait_holding(sessions, edition_id, doomed)
        doomed.kill()
        killed = time.monotonic()
        wait_sent(sessions, edition_id, logs=survivor.log)
        recovered = time.monotonic() - killed
    row = tally(
        "worker SIGKILLed mid-batch",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
    )
    row.assert_holds()
    assert row.duplicates_same_id <= 1  # the one message in flight in the killed process


def test_all_workers_killed_then_restarted(
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
        for worker in crew:
            worker.kill()
        killed = time.monotonic()
    time.sleep(RESTART_AFTER)
    with workers(env, tmp_path, 2, prefix="again") as crew:
        wait_sent(sessions, edition_id, logs=crew[0].log)
        recovered = time.monotonic() - killed
    row = tally(
        f"all workers SIGKILLed, restarted {RESTART_AFTER:.0f} s later",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
    )
    row.assert_holds()
    assert row.duplicates_same_id <= len(crew)  # at most one in flight per killed process


def test_worker_frozen_past_its_lease_then_continued(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: FaultyRelay,
    tmp_path: Path,
) -> None:
    if backend == "sqlite":
        # SQLite has one writer: a process frozen inside a write transaction holds the
        # database's lock until it continues, so every other process waits (or times out)
        # by design. This row is about leases on the production stack.
        pytest.skip("frozen-worker row runs on PostgreSQL+Redis only: SQLite has one writer")
    edition_id = seed(sessions)
    with workers(env, tmp_path, 2) as (survivor, frozen):
        hebdo(env, "send", str(edition_id))
        wait_progress(sessions, edition_id, 0.3)
        wait_holding(sessions, edition_id, frozen)
        frozen.pause()  # SIGSTOP: alive, holding its claimed rows, saying nothing
        stopped = time.monotonic()
        # Its leases (5 s) run out and the beat hands its rows to the other worker; when
        # it wakes up, the per-message gate must keep it from sending them again.
        wait_sent(sessions, edition_id, logs=survivor.log)
        recovered = time.monotonic() - stopped
        frozen.resume()
        time.sleep(5)  # what it would wrongly send after waking up, it sends now
    row = tally(
        "worker frozen (SIGSTOP) past its lease, then continued",
        backend,
        sessions,
        edition_id,
        smtp_server.messages,
        recover_seconds=recovered,
    )
    row.assert_holds()
    assert row.duplicates_same_id <= 1  # the one message it had in flight when frozen
