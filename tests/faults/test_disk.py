"""The embedded default's disk fills up: the database, the broker and the sink's Maildir
all live in the instance folder, here a small tmpfs that a filler file then fills."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db import make_engine, session_factory
from service.models import DeliveryStatus, EditionStatus
from service.tools.migrate import upgrade
from service.tools.sink import maildir_files
from tests.faults.harness import (
    READERS,
    count,
    edition_status,
    hebdo,
    seed,
    tally,
    wait_progress,
    workers,
)
from tests.support.smtp import RecordedMessage, SinkProcess
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("backend", ["sqlite"])]

DISK_FULL_FOR = 20  # seconds


def _unavailable(reason: str) -> None:
    # CI runs as root and must run this row: there, a missing tmpfs fails loudly.
    if os.environ.get("CI"):
        pytest.fail(reason.replace("skipped", "cannot run in CI"))
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (mounting needs root: the row is skipped, saying so, without it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        _unavailable("disk-full row skipped: mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        _unavailable(f"disk-full row skipped: cannot mount a tmpfs ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full; the file, to delete when space comes back."""
    filler = disk / "filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler


_HEADER = re.compile(rb"^(Delivered-To|Message-ID): *(.+?)$", re.MULTILINE | re.IGNORECASE)


def _received(maildir: Path) -> list[RecordedMessage]:
    messages = []
    for path in maildir_files(maildir):
        head = path.read_bytes().split(b"\n\n", 1)[0]
        fields = {name.lower(): value.strip() for name, value in _HEADER.findall(head)}
        messages.append(
            RecordedMessage(
                mail_from="",
                rcpt_tos=(fields[b"delivered-to"].decode(),),
                data=b"Message-ID: " + fields[b"message-id"] + b"\r\n\r\n",
                received_at=path.stat().st_mtime,
                peer="sink",
            )
        )
    return messages


def test_disk_full_under_the_database_broker_and_sink(
    backend: str, small_disk: Path, tmp_path: Path
) -> None:
    instance = small_disk / "instance"
    instance.mkdir()
    maildir = small_disk / "maildir"
    with SinkProcess(maildir) as sink:
        env = {
            "HEBDO_INSTANCE": str(instance),
            "SECRET_KEY": "test-secret-disk",
            "BASE_URL": "http://hebdo.test",
            "SMTP_URL": sink.url,
            "HEBDO_LEASE_SECONDS": "5",
            "HEBDO_BATCH_SIZE": "20",
            # Slow enough that most readers are still to send when the disk fills.
            "HEBDO_RATE_PER_SECOND": "20",
            "DATABASE_URL": f"sqlite:///{instance / 'hebdo.sqlite'}",
            "CELERY_BROKER_URL": f"sqla+sqlite:///{instance / 'broker.sqlite'}",
        }
        upgrade(env["DATABASE_URL"])
        engine = make_engine(Settings.from_env(env).database_url)
        sessions: sessionmaker[Session] = session_factory(engine)
        try:
            edition_id = seed(sessions)
            restarted = 0
            with workers(env, tmp_path, 2) as crew:
                hebdo(env, "send", str(edition_id))
                wait_progress(sessions, edition_id, 0.3)
                filler = _fill(small_disk)
                full = time.monotonic()
                unsent_at_fault = READERS - count(sessions, edition_id, DeliveryStatus.SENT)
                time.sleep(DISK_FULL_FOR)
                failed_while_full = count(sessions, edition_id, DeliveryStatus.FAILED)
                filler.unlink()  # the operator frees space
                # The embedded broker's workers may exit on the full disk (kombu's SQL
                # transport runs out of pooled connections): a supervisor restarts them.
                deadline = time.monotonic() + 240
                while edition_status(sessions, edition_id) != EditionStatus.SENT:
                    assert time.monotonic() < deadline, crew[0].log()
                    for n, worker in enumerate(crew):
                        if worker.process is not None and worker.process.poll() is not None:
                            restarted += 1
                            crew[n] = WorkerProcess(
                                env, tmp_path / f"restarted{restarted}.log", concurrency=1,
                                beat=worker.beat, name=f"restarted{restarted}",
                            )  # fmt: skip
                            crew[n].start()
                    time.sleep(1)
                recovered = time.monotonic() - full
            row = tally(
                f"disk full for {DISK_FULL_FOR} s (database, broker and sink on it)",
                backend,
                sessions,
                edition_id,
                _received(maildir),
                recover_seconds=recovered,
                note=f"{unsent_at_fault} readers still to send when it filled; the sink answers"
                f" 452 while full; workers exited {restarted} times and were restarted, as a"
                " supervisor would",
            )
        finally:
            engine.dispose()
    row.assert_holds()
    assert failed_while_full == 0
    assert unsent_at_fault > 0, "the send was over before the disk filled: the row proves nothing"
