"""What every fault row does: seed readers, send through real processes, count what arrived.

The system is driven from outside: the `hebdo` command in a subprocess, real Celery
workers (tests/support/worker.py), and plain SQL reads of the tables.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from tests import factories
from tests.support.smtp import RecordedMessage
from tests.support.worker import WorkerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where each row goes; tests/faults/conftest.py prints them as one table at the end.
TABLE_PATH = REPO_ROOT / "test-artifacts" / "faults.jsonl"
READERS = int(os.environ.get("HEBDO_FAULT_READERS", "300"))

_MESSAGE_ID = re.compile(rb"^Message-ID: *(.+?)\r?$", re.MULTILINE | re.IGNORECASE)


@dataclass
class Row:
    """One line of the fault table."""

    fault: str
    stack: str
    readers: int = 0
    delivered: int = 0
    duplicates_same_id: int = 0
    duplicates_other_id: int = 0
    lost: int = 0
    recover_seconds: float | None = None
    note: str = ""
    problems: list[str] = field(default_factory=list)

    def record(self) -> None:
        """Append the row to the table file (one JSON object a line)."""
        TABLE_PATH.parent.mkdir(exist_ok=True)
        with TABLE_PATH.open("a", encoding="utf-8") as table:
            table.write(json.dumps(asdict(self)) + "\n")

    def assert_holds(self) -> None:
        """The promise: nobody lost, no copy under another Message-ID, counts agree."""
        assert self.lost == 0, f"{self.lost} readers lost: {self.problems[:5]}"
        assert self.duplicates_other_id == 0, f"copies under another Message-ID: {self.problems}"
        assert not self.problems, self.problems


def stack_name(backend: str) -> str:
    """The stack as the table names it."""
    return "PostgreSQL+Redis" if backend == "postgres" else "SQLite (embedded)"


def seed(sessions: sessionmaker[Session], count: int = READERS) -> int:
    """A newsletter with `count` confirmed readers and a draft edition; its id."""
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        _bulk_readers(session, letter, count)
        return factories.edition(session, letter).id


def _bulk_readers(session: Session, letter: Newsletter, count: int) -> None:
    now = utcnow()
    ids = session.scalars(
        insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
        [{"email": f"r{n}@example.org", "name": f"Lecteur {n}"} for n in range(count)],
    ).all()
    session.execute(
        insert(Subscription),
        [
            {
                "newsletter_id": letter.id,
                "subscriber_id": subscriber_id,
                "status": SubscriptionStatus.CONFIRMED,
                "consent_at": now,
                "consent_source": "test",
                "confirmed_at": now,
            }
            for subscriber_id in ids
        ],
    )


def hebdo(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run the `hebdo` command as an operator would; its stdout (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"hebdo {' '.join(args)}: {result.stderr}{result.stdout}"
    return result.stdout


@contextmanager
def workers(
    env: dict[str, str], folder: Path, count: int = 2, *, beat: bool = True, prefix: str = "w"
) -> Iterator[list[WorkerProcess]]:
    """`count` real workers (the first one also runs beat), stopped on exit."""
    started: list[WorkerProcess] = []
    try:
        for n in range(count):
            worker = WorkerProcess(
                env,
                folder / f"{prefix}{n}.log",
                concurrency=1,
                beat=beat and n == 0,
                name=f"{prefix}{n}",
            )
            worker.start()
            started.append(worker)
        yield started
    finally:
        for worker in started:
            worker.resume()
            worker.stop()


def edition_status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    """The edition's status now."""
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status


def edition_detail(sessions: sessionmaker[Session], edition_id: int) -> str:
    """The edition's status detail now (why it paused, for instance)."""
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status_detail or ""


def count(sessions: sessionmaker[Session], edition_id: int, status: DeliveryStatus) -> int:
    """How many of the edition's rows have this status."""
    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.edition_id == edition_id, Delivery.status == status)
            )
            or 0
        )


def wait_until(
    what: str, condition: Callable[[], bool], timeout: float, *, explain: Callable[[], str] = str
) -> None:
    """Poll `condition` until true; fail with `what` (and `explain()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s {explain()}")
        time.sleep(0.2)


def wait_sent(
    sessions: sessionmaker[Session],
    edition_id: int,
    timeout: float = 240,
    logs: Callable[[], str] = str,
) -> None:
    """Wait for the edition to reach `sent` on its own."""

    def explain() -> str:
        counts = {s.value: count(sessions, edition_id, s) for s in DeliveryStatus}
        status = edition_status(sessions, edition_id).value
        return (
            f"(edition {status}: {edition_detail(sessions, edition_id)}; rows {counts})\n{logs()}"
        )

    wait_until(
        f"edition {edition_id} sent",
        lambda: edition_status(sessions, edition_id) == EditionStatus.SENT,
        timeout,
        explain=explain,
    )


def wait_progress(sessions: sessionmaker[Session], edition_id: int, share: float) -> None:
    """Wait until `share` of the edition's rows are sent."""
    with sessions() as session:
        total = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)
        )
    wait_until(
        f"{share:.0%} of edition {edition_id} sent",
        lambda: count(sessions, edition_id, DeliveryStatus.SENT) >= share * (total or 0),
        120,
    )


def wait_holding(sessions: sessionmaker[Session], edition_id: int, worker: WorkerProcess) -> int:
    """Wait until the worker's pool holds claimed rows of the edition; how many."""
    names = {f"{socket.gethostname()}:{pid}" for pid in worker.child_pids()}

    def held() -> int:
        with sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.edition_id == edition_id,
                        Delivery.status == DeliveryStatus.SENDING,
                        Delivery.claimed_by.in_(names),
                    )
                )
                or 0
            )

    wait_until(f"worker {worker.name} holding rows", lambda: held() > 0, 60)
    return held()


def tally(
    fault: str,
    backend: str,
    sessions: sessionmaker[Session],
    edition_id: int,
    received: list[RecordedMessage],
    *,
    recover_seconds: float | None,
    note: str = "",
) -> Row:
    """Compare what the relay accepted with the edition's rows: one table row."""
    with sessions() as session:
        rows = {
            d.email.lower(): d
            for d in session.scalars(select(Delivery).where(Delivery.edition_id == edition_id))
        }
        edition = session.get(Edition, edition_id)
        assert edition is not None
        final = edition.status
    copies: dict[str, list[str]] = defaultdict(list)
    for message in received:
        found = _MESSAGE_ID.search(message.data.split(b"\r\n\r\n", 1)[0])
        message_id = found.group(1).decode() if found else "(none)"
        for rcpt in message.rcpt_tos:
            copies[rcpt.lower()].append(message_id)
    row = Row(fault=fault, stack=stack_name(backend), readers=len(rows), note=note)
    row.recover_seconds = recover_seconds
    for email, delivery in rows.items():
        ids = copies.get(email, [])
        same = [i for i in ids if i == delivery.message_id]
        row.duplicates_other_id += len(ids) - len(same)
        if same:
            row.delivered += 1
            row.duplicates_same_id += len(same) - 1
        else:
            row.lost += 1
            row.problems.append(f"{email}: row {delivery.status.value}, no copy")
        if same and delivery.status != DeliveryStatus.SENT:
            row.problems.append(f"{email}: relay accepted it but the row is {delivery.status}")
        if ids and len(same) != len(ids):
            row.problems.append(f"{email}: Message-IDs {ids} vs row {delivery.message_id}")
    strangers = set(copies) - set(rows)
    if strangers:
        row.problems.append(f"copies for addresses not in the edition: {sorted(strangers)[:5]}")
    if final != EditionStatus.SENT:
        row.problems.append(f"edition ended {final.value}, not sent")
    sent_rows = sum(1 for d in rows.values() if d.status == DeliveryStatus.SENT)
    if sent_rows != row.delivered:
        row.problems.append(f"{sent_rows} rows sent but the relay has {row.delivered} readers")
    row.record()
    return row
