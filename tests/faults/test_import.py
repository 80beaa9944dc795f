"""The process running an import is killed: finished batches stay, a re-run adds no double.

The import runs through `hebdo subscribers import`, which calls the same batched
import as the web's upload; killing that process is the web process dying mid-import.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Subscriber, Subscription
from tests import factories
from tests.faults.harness import REPO_ROOT, Row, hebdo, stack_name, wait_until

pytestmark = pytest.mark.faults

ROWS = 20_000
BATCH = 500


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    """(subscriptions, subscribers, distinct subscriber addresses)."""
    with sessions() as session:
        subscriptions = session.scalar(select(func.count()).select_from(Subscription)) or 0
        subscribers = session.scalar(select(func.count()).select_from(Subscriber)) or 0
        addresses = session.scalar(select(func.count(func.distinct(Subscriber.email)))) or 0
    return int(subscriptions), int(subscribers), int(addresses)


def test_import_process_killed_then_run_again(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session)
    csv = tmp_path / "readers.csv"
    csv.write_text(
        "email,name\n" + "".join(f"i{n}@example.org,Lecteur {n}\n" for n in range(ROWS)), "utf-8"
    )
    args = ["subscribers", "import", str(csv), "--newsletter", "lettre", "--confirmed",
            "--reason", "fault table", "--batch-size", str(BATCH)]  # fmt: skip
    importer = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until("a few batches imported", lambda: _counts(sessions)[0] >= 4 * BATCH, 120)
    finally:
        importer.send_signal(signal.SIGKILL)
        importer.wait(10)
    killed = time.monotonic()
    kept = _counts(sessions)[0]
    assert kept % BATCH == 0, "a batch was kept in part"
    assert kept < ROWS, "the import finished before it could be killed"
    hebdo(env, *args)
    recovered = time.monotonic() - killed
    subscriptions, subscribers, addresses = _counts(sessions)
    row = Row(
        fault=f"import process SIGKILLed after {kept} of {ROWS} rows, run again",
        stack=stack_name(backend),
        readers=ROWS,
        delivered=subscriptions,
        duplicates_other_id=subscribers - addresses + max(0, subscriptions - ROWS),
        lost=ROWS - min(ROWS, subscriptions),
        recover_seconds=recovered,
        note="readers = CSV rows, delivered = readers subscribed, duplicates = doubled readers",
    )
    row.record()
    row.assert_holds()
    assert (subscriptions, subscribers, addresses) == (ROWS, ROWS, ROWS)
