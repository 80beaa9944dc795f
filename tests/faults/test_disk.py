"""The embedded default's disk fills up: the database, the broker and the sink's Maildir
all live in the instance folder, here a small tmpfs that a filler file then fills."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
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
    REPO_ROOT,
    count,
    edition_detail,
    edition_status,
    seed,
    tally,
    wait_progress,
    wait_until,
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


# "sink": only the sink's Maildir is on the small disk (a relay whose disk fills, the
# database elsewhere); "everything": the database, the broker and the Maildir share it.
LAYOUTS = {"sink": "the sink's Maildir on it", "everything": "database, broker and sink on it"}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_disk_full_under_the_database_broker_and_sink(
    backend: str, layout: str, small_disk: Path, tmp_path: Path
) -> None:
    instance = (small_disk if layout == "everything" else tmp_path) / "instance"
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
                # The editor follows the send with `hebdo send --wait`, as the README says.
                follower = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "send", str(edition_id), "--wait",
                     "--timeout", "400"],
                    env={**os.environ, **env}, cwd=REPO_ROOT,
                    stdout=(tmp_path / "send.out").open("wb"),
                    stderr=(tmp_path / "send.err").open("wb"),
                )  # fmt: skip
                wait_until(
                    "the send started",
                    lambda: edition_status(sessions, edition_id) == EditionStatus.SENDING,
                    60,
                )
                wait_progress(sessions, edition_id, 0.3)
                filler = _fill(small_disk)
                full = time.monotonic()
                unsent_at_fault = READERS - count(sessions, edition_id, DeliveryStatus.SENT)
                # The relay (the sink) answers 452 4.3.1: the send pauses itself, saying why.
                # With the database on the full disk too, the pause itself may not fit (see
                # README, "Guarantees"): the leases and the sweep take over once there is room.
                wait_until(
                    "the edition paused for the full disk",
                    lambda: (
                        layout == "everything"
                        or edition_status(sessions, edition_id) == EditionStatus.PAUSED
                    ),
                    DISK_FULL_FOR,
                    explain=lambda: (
                        f"{edition_detail(sessions, edition_id)}; rows "
                        + str({st.value: count(sessions, edition_id, st) for st in DeliveryStatus})
                        + f"\n{crew[0].log()[-3000:]}\n{crew[1].log()[-3000:]}"
                        f"\n{sink.stderr_path.read_text()[-2000:]}"
                    ),
                )
                paused_detail = edition_detail(sessions, edition_id)
                sent_when_paused = count(sessions, edition_id, DeliveryStatus.SENT)
                time.sleep(max(0.0, DISK_FULL_FOR - (time.monotonic() - full)))
                failed_while_full = count(sessions, edition_id, DeliveryStatus.FAILED)
                # Nothing was marked sent that the sink did not keep, even while full.
                marked_while_full = count(sessions, edition_id, DeliveryStatus.SENT)
                kept_while_full = len({m.rcpt_tos[0] for m in _received(maildir)})
                filler.unlink()  # the operator frees space
                # Were a worker to exit on the full disk (kombu's SQL transport used to run
                # out of pooled connections), restart it as a supervisor would, and fail.
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
                follower.wait(timeout=60)
                out = (tmp_path / "send.out").read_text("utf-8")
                err = (tmp_path / "send.err").read_text("utf-8")
            row = tally(
                f"disk full for {DISK_FULL_FOR} s ({LAYOUTS[layout]})",
                backend,
                sessions,
                edition_id,
                _received(maildir),
                recover_seconds=recovered,
                note=f"{unsent_at_fault} readers still to send when it filled; the sink answers"
                " 452 4.3.1 while full; "
                + (
                    "the edition paused itself with the reason, then resumed by itself"
                    if layout == "sink"
                    else "the pause cannot be written on the full disk: rows wait for their"
                    " leases and the sweep"
                )
                + ("; no worker exited" if not restarted else f"; {restarted} workers exited"),
            )
        finally:
            engine.dispose()
    row.assert_holds()
    assert failed_while_full == 0
    assert marked_while_full <= kept_while_full
    # The editor's `send --wait` ended with everyone, whatever happened on the way.
    assert follower.returncode == 0, err
    assert f"delivered {READERS} messages" in out
    if layout == "sink":
        assert "the SMTP relay's storage is full (452 4.3.1" in paused_detail, paused_detail
        assert sent_when_paused < READERS
        # The progress line said why it stopped and when it would try again.
        assert "the SMTP relay's storage is full" in err, err[-2000:]
        assert "retrying at" in err
    # The embedded broker's channel survives the full disk (worker/sql_transport.py).
    assert restarted == 0, f"workers exited {restarted} times"
    assert unsent_at_fault > 0, "the send was over before the disk filled: the row proves nothing"
