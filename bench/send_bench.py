"""Benchmark the send path: one edition to N subscribers through real Celery workers.

    python -m bench.send_bench --subscribers 100000 --workers 2
    python -m bench.send_bench --postgres auto --redis auto      # production mode
    python -m bench.send_bench --postgres postgresql://u:p@host/postgres --redis redis://host/0

A fresh instance (SQLite and the SQL broker by default; PostgreSQL and Redis with
--postgres/--redis, "auto" starting throwaway servers), N subscribers created in
bulk, the sample French edition frozen and snapshotted, then W worker processes
(`celery worker --concurrency C`) send it to an SMTP sink in its own process: Hebdo's
Maildir sink by default, Postfix's smtp-sink with --sink postfix. Timed from the
enqueue to the edition's SENT status. CPU time comes from /proc/<pid>/stat
(utime + stime, pool children included) and peak memory from VmHWM.

Then, for scale: personalise() alone (CPU per message, with and without a DKIM
signature), and Postfix's smtp-source sending messages of the same size to the
same kind of sink, when Postfix is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, func, insert, literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bench import dkim_bench
from service.config import Settings
from service.db import make_engine, session_factory
from service.editions import store
from service.mail.mime import personalise
from service.models import (
    Delivery,
    Edition,
    EditionStatus,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.sending import controls, loop, schedule
from service.tools.migrate import upgrade
from tests import factories
from tests.support import free_port
from tests.support.postgres import PostgresCluster
from tests.support.redis_server import RedisServer
from tests.support.smtp import SinkProcess
from tests.support.worker import WorkerProcess
from worker.celery_app import app as celery_app
from worker.tasks.sending import send_pending

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- measuring processes -----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """VmHWM, the resident set's high-water mark, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Pids whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except FileNotFoundError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Measured:
    """One process of the run, or a server with its child processes (group=True)."""

    role: str
    pid: int
    group: bool = False
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_mib: float = 0.0
    _started: dict[int, float] | None = None

    def _pids(self) -> list[int]:
        return [self.pid, *children(self.pid)] if self.group else [self.pid]

    def start(self) -> None:
        self._started = {pid: cpu_seconds(pid) for pid in self._pids()}
        self.cpu_start = sum(self._started.values())

    def end(self) -> None:
        pids = self._pids()
        started = self._started or {}
        # A server process born during the run started from zero.
        self.cpu_end = sum(cpu_seconds(pid) for pid in pids) + sum(
            cpu for pid, cpu in started.items() if pid not in pids
        )
        self.peak_mib = max(peak_rss_mib(pid) for pid in pids)

    @property
    def cpu(self) -> float:
        return self.cpu_end - self.cpu_start


def machine() -> str:
    """nproc, CPU model, RAM and Python, for the results table."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        "unknown CPU",
    )
    ram_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    python = sys.version.split()[0]
    return f"{os.cpu_count()} x {model}, {ram_kib / 2**20:.1f} GiB RAM, Python {python}"


# --- the instance --------------------------------------------------------------------


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[tuple[str, int | None]]:
    """A fresh, migrated database: SQLite in workdir, or a new one on a PostgreSQL server."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'hebdo.sqlite'}"
        upgrade(url)
        yield url, None
        return
    with ExitStack() as stack:
        server, postmaster = kind, None
        if kind == "auto":
            cluster = stack.enter_context(PostgresCluster())
            server = cluster.url("postgres")
            postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        name = f"hebdo_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            yield url, postmaster
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@contextmanager
def redis_url(kind: str | None) -> Iterator[tuple[str | None, int | None]]:
    """None (the SQL broker), a given Redis URL, or a throwaway redis-server (and its pid)."""
    if kind != "auto":
        yield kind, None
        return
    with RedisServer() as server:
        assert server.process is not None
        yield server.url, server.process.pid


def create_readers(factory: sessionmaker[Session], letter_id: int, count: int) -> None:
    """`count` confirmed readers, in chunks of plain INSERTs and one INSERT … SELECT."""
    chunk = 10_000
    for first in range(0, count, chunk):
        with factory() as session, session.begin():
            session.execute(
                insert(Subscriber),
                [
                    {"email": f"lecteur{n}@exemple.org", "name": f"Lecteur {n}"}
                    for n in range(first, min(count, first + chunk))
                ],
            )
    now = utcnow()
    with factory() as session, session.begin():
        table = typing.cast(Table, Subscription.__table__)
        session.execute(
            table.insert().from_select(
                [
                    "newsletter_id",
                    "subscriber_id",
                    "status",
                    "consent_at",
                    "consent_source",
                    "confirmed_at",
                    "created_at",
                ],
                select(
                    literal(letter_id),
                    Subscriber.id,
                    literal(SubscriptionStatus.CONFIRMED.value),
                    literal(now, type_=table.c.consent_at.type),
                    literal("bench"),
                    literal(now, type_=table.c.confirmed_at.type),
                    literal(now, type_=table.c.created_at.type),
                ),
            )
        )


@contextmanager
def sink(kind: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """An SMTP sink in its own process; yields (URL, pid)."""
    if kind == "hebdo":
        with SinkProcess(workdir / "maildir") as process:
            assert process.process is not None
            yield process.url, process.process.pid
            shutil.rmtree(workdir / "maildir", ignore_errors=True)
        return
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    # -u: smtp-sink drops root privileges to this user; 1000: listen backlog.
    postfix = subprocess.Popen(
        [binary, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if time.monotonic() > deadline or postfix.poll() is not None:
                raise RuntimeError("smtp-sink did not start")
            time.sleep(0.05)
        yield f"smtp://127.0.0.1:{port}", postfix.pid
    finally:
        postfix.terminate()
        postfix.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- the runs ------------------------------------------------------------------------


@dataclass
class SendRun:
    """What the end-to-end run measured."""

    messages: int
    seconds: float
    message_bytes: int
    processes: list[Measured]
    snapshot_seconds: float
    create_seconds: float
    first_seconds: float = 0.0  # from the enqueue to the first delivery marked sent
    last_seconds: float = 0.0  # … and to the last
    prepared: Any = None  # the edition as the workers prepared it (for DKIM samples)
    sent_times: list[datetime] = field(default_factory=list)  # with keep_times: each row's sent_at


def instance_env(instance: Path, database_url: str, broker: str | None) -> dict[str, str]:
    """A fresh instance folder and the settings every bench run starts from."""
    instance.mkdir()
    return {
        "HEBDO_INSTANCE": str(instance),
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "BASE_URL": "https://lettre.exemple.org",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker or f"sqla+sqlite:///{instance / 'broker.sqlite'}",
    }


def send_run(
    args: argparse.Namespace,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    load: Callable[[dict[str, str]], AbstractContextManager[Any]] | None = None,
    keep_times: bool = False,
) -> SendRun:
    """Create the instance, send the edition through real workers, measure.

    `load(env)`, when given, is entered once the workers run (on the same instance) and
    its `start()` called once the first message is out, its `join()` once the edition is sent:
    bench.tracking_bench puts web traffic on the machine that way.
    """
    with ExitStack() as stack:
        database_url, postmaster = stack.enter_context(database(args.postgres or "sqlite", workdir))
        broker, redis_pid = stack.enter_context(redis_url(args.redis))
        instance = workdir / "instance"
        env = instance_env(instance, database_url, broker)
        env.update(
            {
                "HEBDO_BATCH_SIZE": str(args.batch_size),
                "HEBDO_MAX_CONNECTIONS": str(args.workers * args.concurrency),
            }
        )
        if broker:
            env["REDIS_URL"] = broker
        env.update(extra_env or {})
        settings = Settings.from_env(env)
        factory = session_factory(make_engine(settings.database_url))

        started = time.perf_counter()
        with factory() as session, session.begin():
            letter_id = factories.newsletter(session, slug="banc").id
        create_readers(factory, letter_id, args.subscribers)
        create_seconds = time.perf_counter() - started

        started = time.perf_counter()
        with factory() as session, session.begin():
            letter = session.get(Newsletter, letter_id)
            assert letter is not None
            edition = store.create(session, letter, factories.sample_data("fr"))
            begun = controls.begin(
                session,
                edition,
                base_url=settings.base_url,
                templates_path=settings.email_templates_path,
                batch_size=settings.batch_size,
            )
            prepared = loop.prepare_edition(edition, settings)
        snapshot_seconds = time.perf_counter() - started
        size = len(personalise(prepared, 1, "lecteur1@exemple.org", "Lecteur 1", utcnow()).data)

        sink_url, sink_pid = stack.enter_context(sink(args.sink, workdir))
        env["SMTP_URL"] = sink_url
        workers = [
            WorkerProcess(
                env, workdir / f"worker{n}.log", concurrency=args.concurrency, name=f"bench{n}"
            )
            for n in range(args.workers)
        ]
        for worker in workers:
            stack.callback(worker.stop)
            worker.start()
        running = stack.enter_context(load(dict(env))) if load is not None else None
        measured = [Measured("sink", sink_pid)]
        if postmaster is not None:
            measured.append(Measured("PostgreSQL (all server processes)", postmaster, group=True))
        if redis_pid is not None:
            measured.append(Measured("Redis", redis_pid))
        for worker in workers:
            assert worker.process is not None
            measured.append(Measured("worker main", worker.process.pid))
            measured += [Measured("worker pool child", pid) for pid in worker.child_pids()]
        for process in measured:
            process.start()

        enqueued_at = utcnow()
        started = time.perf_counter()
        # Enqueued through the worker's own app, as before the broker adapter existed, so
        # the figures compare with earlier runs (see notes: the adapter's messages are
        # still to be measured on their own).
        with celery_app.connection_for_write(settings.broker_url) as connection:
            for _ in range(max(1, min(begun.batches, args.workers * args.concurrency))):
                send_pending.apply_async((begun.edition_id,), connection=connection)
        load_waits = running is not None
        deadline = time.monotonic() + args.timeout
        while True:
            with factory() as session:
                status = session.scalar(
                    select(Edition.status).where(Edition.id == begun.edition_id)
                )
                # The load starts with the first message out, so it falls on the steady
                # send and not on the workers' start-up.
                if load_waits and session.scalar(
                    select(Delivery.id)
                    .where(Delivery.edition_id == begun.edition_id, Delivery.sent_at.is_not(None))
                    .limit(1)
                ):
                    assert running is not None
                    running.start()
                    load_waits = False
            if status == EditionStatus.SENT:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not sent after {args.timeout} s:\n{workers[0].log()}")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        for process in measured:
            process.end()
        if running is not None:
            running.join()
        with factory() as session:
            sent_times = (
                list(
                    session.scalars(
                        select(Delivery.sent_at).where(
                            Delivery.edition_id == begun.edition_id, Delivery.sent_at.is_not(None)
                        )
                    )
                )
                if keep_times
                else []
            )
            first, last = session.execute(
                select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                    Delivery.edition_id == begun.edition_id
                )
            ).one()
    assert first is not None, "the edition is SENT: rows were sent"
    assert last is not None
    return SendRun(
        begun.recipients,
        seconds,
        size,
        measured,
        snapshot_seconds,
        create_seconds,
        first_seconds=(first - enqueued_at).total_seconds(),
        last_seconds=(last - enqueued_at).total_seconds(),
        prepared=prepared,
        sent_times=[t for t in sent_times if t is not None],
    )


def scheduled_start(workdir: Path, readers: int = 1000, ahead: float = 25.0) -> dict[str, float]:
    """Seconds from an edition's scheduled time to its first and last message sent.

    The embedded default with one worker running the beat, as `hebdo worker` runs it:
    the edition is scheduled `ahead` seconds after the worker is ready, so the beat's
    look-ahead (service.sending.schedule.SWEEP_SECONDS) and not a tick decides when it
    starts. The clock is the database's sent_at against the scheduled time.
    """
    instance = workdir / "instance"
    env = instance_env(instance, f"sqlite:///{instance / 'hebdo.sqlite'}", None)
    upgrade(env["DATABASE_URL"])
    factory = session_factory(make_engine(env["DATABASE_URL"]))
    with factory() as session, session.begin():
        letter_id = factories.newsletter(session, slug="banc").id
    create_readers(factory, letter_id, readers)
    with ExitStack() as stack:
        env["SMTP_URL"], _pid = stack.enter_context(sink("postfix", workdir))
        worker = WorkerProcess(env, workdir / "beat-worker.log", concurrency=1, beat=True)
        stack.callback(worker.stop)
        worker.start()
        with factory() as session, session.begin():
            letter = session.get(Newsletter, letter_id)
            assert letter is not None
            edition = store.create(session, letter, factories.sample_data("fr"))
            when = schedule.schedule(
                session, edition, utcnow() + timedelta(seconds=ahead), who=None
            )
            edition_id = edition.id
        deadline = time.monotonic() + ahead + 120
        while True:
            with factory() as session:
                status = session.scalar(select(Edition.status).where(Edition.id == edition_id))
            if status == EditionStatus.SENT:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the scheduled edition was not sent:\n{worker.log()}")
            time.sleep(0.2)
    with factory() as session:
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.edition_id == edition_id
            )
        ).one()
    assert first is not None
    assert last is not None
    return {
        "readers": readers,
        "first_message_after_scheduled_seconds": (first - when).total_seconds(),
        "last_message_after_scheduled_seconds": (last - when).total_seconds(),
    }


def micro_personalise(samples: int = 3000) -> dict[str, float]:
    """CPU µs per personalise() call on the sample edition, without and with DKIM."""
    figures = dkim_bench.measure(samples)
    return {
        "personalise": figures["personalise()"],
        "personalise + DKIM (RSA-2048)": figures["personalise() + DKIM RSA-2048 (after)"],
    }


def smtp_source(
    kind: str,
    workdir: Path,
    size: int,
    messages: int,
    sessions: int,
    message_file: Path | None = None,
) -> dict[str, float] | None:
    """Postfix's smtp-source: `messages` of `size` bytes over parallel sessions into the sink.

    With `message_file`, it sends those bytes (Hebdo's own message) instead of filler,
    and keeps each session's connection for its next message (-d), as Hebdo does.
    """
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(binary).exists():
        return None
    what = ["-d", "-F", str(message_file)] if message_file else ["-l", str(size)]
    with sink(kind, workdir) as (url, pid):
        host_port = url.removeprefix("smtp://")
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        result = subprocess.run(
            [binary, "-s", str(sessions), *what, "-m", str(messages), host_port],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        sink_cpu = cpu_seconds(pid) - cpu_before
    if result.returncode != 0:
        raise SystemExit(f"smtp-source failed: {result.stderr}")
    return {"seconds": seconds, "rate": messages / seconds, "sink_cpu": sink_cpu}


# --- report --------------------------------------------------------------------------


def report(args: argparse.Namespace, run: SendRun, micro: dict[str, float], source: Any) -> str:
    """The figures as Markdown."""
    mode = "PostgreSQL + Redis" if args.postgres else "SQLite + SQL broker (embedded default)"
    lines = [
        f"Machine: {machine()}; load average before the run: {args.load}",
        f"Mode: {mode}; sink: {args.sink}; {args.workers} worker(s) x concurrency "
        f"{args.concurrency}; batch size {args.batch_size}",
        "",
        f"- Subscribers created in bulk: {args.subscribers:,} in {run.create_seconds:.1f} s; "
        f"freeze + snapshot of the outbox: {run.snapshot_seconds:.2f} s",
        f"- Message size: {run.message_bytes:,} bytes (multipart/alternative, quoted-printable)",
        f"- **Sent {run.messages:,} messages in {run.seconds:.1f} s: "
        f"{run.messages / run.seconds:,.0f} messages/s**",
        "",
        "| process | pid | CPU s | CPU s per 1,000 messages | peak RSS (VmHWM) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {process.role} | {process.pid} | {process.cpu:.1f} | "
        f"{process.cpu / run.messages * 1000:.3f} | {process.peak_mib:.0f} MiB |"
        for process in run.processes
    ]
    workers_cpu = sum(p.cpu for p in run.processes if p.role.startswith("worker"))
    everything = sum(p.cpu for p in run.processes)
    lines += [
        f"| all workers | | {workers_cpu:.1f} | {workers_cpu / run.messages * 1000:.3f} | |",
        f"| all processes | | {everything:.1f} | {everything / run.messages * 1000:.3f} | |",
        "",
    ]
    for name, micros in micro.items():
        lines.append(f"- {name}() alone: {micros:,.0f} µs CPU per message")
    if source is not None:
        lines.append(
            f"- Postfix smtp-source ({args.source_sessions} sessions, {args.source_messages:,} x "
            f"{run.message_bytes:,} bytes) into the same {args.sink} sink: "
            f"{source['rate']:,.0f} messages/s (sink CPU "
            f"{source['sink_cpu'] / args.source_messages * 1000:.3f} s per 1,000)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--postgres", help="server URL to create a database in, or 'auto'")
    parser.add_argument("--redis", help="Redis URL (broker and limits), or 'auto'")
    parser.add_argument("--sink", choices=("hebdo", "postfix"), default="hebdo")
    parser.add_argument("--source-messages", type=int, default=10_000)
    parser.add_argument("--source-sessions", type=int, default=2)
    parser.add_argument("--no-source", action="store_true", help="skip Postfix's smtp-source")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    args.load = Path("/proc/loadavg").read_text().split()[0]

    micro = micro_personalise()
    with tempfile.TemporaryDirectory(prefix="hebdo-send-bench-") as tmp:
        workdir = Path(tmp)
        run = send_run(args, workdir)
        source = None
        if not args.no_source:
            (workdir / "source").mkdir()
            source = smtp_source(
                args.sink,
                workdir / "source",
                run.message_bytes,
                args.source_messages,
                args.source_sessions,
            )
    print(report(args, run, micro, source))


if __name__ == "__main__":
    main()
