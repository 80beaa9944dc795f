"""Load on the public tracking endpoints: the open pixel and the click redirect.

    python -m bench.tracking_bench                       # SQLite, 3 gunicorn workers, 10 s each
    python -m bench.tracking_bench --send 20000          # the same while a 20,000-reader send runs
    python -m bench.tracking_bench --send 20000 --postgres auto --redis auto

An edition delivered to --readers readers (delivery rows marked sent an hour ago,
so every event goes through the full human/machine rules), served by gunicorn as
docker compose runs it (3 sync workers; --workers and --threads change that) on
loopback, then `wrk` (apt-get install wrk) fetches the pixel and then
a click of --readers different deliveries (a Lua script walks through their signed
URLs). Prints requests per second, p50 and p99 latency, the non-2xx/3xx answers
of each, and the CPU time gunicorn's processes used per request. gunicorn is then
stopped gracefully and the event rows are counted: every answered request must have
its row (events are written in batches, the last one at exit).

With --send N: first N readers get an edition through real Celery workers into an
SMTP sink (bench.send_bench's machinery) with no web traffic, then again on a fresh
instance while gunicorn serves the pixel and the click of another newsletter's
edition on the same database and wrk loads them. Prints the send's messages per
second in both runs: over the whole send, and over the seconds wrk ran (the steady
rate of the quiet run for comparison).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from sqlalchemy import func, select, update

from bench.send_bench import send_run
from service import tokens
from service.config import Settings
from service.db import make_engine, session_factory
from service.mail.mime import CLICK_PURPOSE, OPEN_PURPOSE
from service.models import (
    Delivery,
    DeliveryStatus,
    EditionStatus,
    Event,
    EventKind,
    utcnow,
)
from service.tools.migrate import upgrade
from tests import factories
from tests.support import free_port
from tests.support.postgres import PostgresCluster

LUA = """
local paths = {}
for line in io.lines("%(urls)s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], {["User-Agent"] = "%(agent)s"})
end
"""
# With --rate: an open load. Each wrk thread hands out send times `interval` ms apart
# and a connection that got its answer waits for the next free one (at most 50 ms of
# backlog is kept), so the rate offered does not drop as the answers slow down: a
# fixed pause per connection would offer connections / (pause + latency) instead.
PACE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } hebdo_timespec;
int clock_gettime(int clock, hebdo_timespec *now);
]]
local now = ffi.new("hebdo_timespec")
local function ms()
  ffi.C.clock_gettime(1, now)  -- CLOCK_MONOTONIC
  return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
end
local interval, slot = %(interval)f, 0
delay = function()
  local t = ms()
  slot = math.max(slot + interval, t - 50)
  return math.max(0, math.floor(slot - t + 0.5))
end
"""
THREADS = 2  # wrk's
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def _prepare(settings: Settings, readers: int) -> list[int]:
    sessions = session_factory(make_engine(settings.database_url))
    with sessions.begin() as session:
        letter = factories.newsletter(session, "bench")
        factories.readers(session, letter, readers, prefix="bench")
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=1000)
        edition.status = EditionStatus.SENT  # last week's: no worker has anything to do
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition.id)
            .values(status=DeliveryStatus.SENT, sent_at=utcnow() - timedelta(hours=1))
        )
        return list(session.scalars(select(Delivery.id).where(Delivery.edition_id == edition.id)))


def _wrk(
    base: str, paths: list[str], seconds: int, connections: int, folder: Path, rate: int = 0
) -> str:
    urls = folder / f"urls-{len(paths)}-{time.monotonic_ns()}.txt"
    urls.write_text("\n".join(paths) + "\n")
    script = folder / "walk.lua"
    lua = LUA % {"urls": urls, "agent": AGENT}
    if rate:
        lua += PACE % {"interval": THREADS * 1000 / rate}
    script.write_text(lua)
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    result = subprocess.run(
        [*command, "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _figures(output: str) -> str:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    return (
        f"{float(rate[1]) if rate else 0:8.0f} req/s  p50 {p50[1] if p50 else '?':>8}"
        f"  p99 {p99[1] if p99 else '?':>8}  non-2xx/3xx {bad[1] if bad else 0}"
        + (f"  ({errors[0]})" if errors else "")
    )


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children, all threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        todo.extend(int(child) for child in children)
    return total


def _requests(output: str) -> int:
    found = re.search(r"(\d+) requests in", output)
    return int(found[1]) if found else 0


class Load:
    """gunicorn over an instance's database, and wrk on its pixel and click URLs."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.env: dict[str, str] = {}
        self.runs: list[tuple[str, str, datetime, datetime]] = []  # name, wrk output, from, to
        self.written: dict[EventKind, int] = {}
        self.cpu: dict[str, float] = {}  # gunicorn's CPU seconds during each wrk run
        self._server: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._paths: dict[str, list[str]] = {}
        self.base = ""

    def on(self, env: dict[str, str]) -> Load:
        """Serve this instance (the environment of its other processes)."""
        self.env = dict(env)
        return self

    def __enter__(self) -> Load:
        settings = Settings.from_env(self.env)
        ids = _prepare(settings, self.args.readers)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(self.args.workers), "--threads",
             str(self.args.threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
             "service.app:create_app()"],
            env={**os.environ, **self.env},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-s", "-o", "/dev/null", self.base + "/login"]).returncode:
            if time.monotonic() > deadline or self._server.poll() is not None:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)
        secret = settings.secret_key
        self._paths = {
            "pixel": [f"/o/{tokens.sign(secret, OPEN_PURPOSE, i)}.gif" for i in ids],
            "click": [f"/c/{tokens.sign(secret, CLICK_PURPOSE, i)}/{i % 6}" for i in ids],
        }
        return self

    def run(self) -> None:
        """wrk on the pixel, then on the click, --seconds each."""
        assert self._server is not None
        for name, paths in self._paths.items():
            began, cpu = utcnow(), _cpu_seconds(self._server.pid)
            output = _wrk(
                self.base, paths, self.args.seconds, self.args.connections, self.folder,
                self.args.rate,
            )  # fmt: skip
            self.cpu[name] = _cpu_seconds(self._server.pid) - cpu
            self.runs.append((name, output, began, utcnow()))

    def start(self) -> None:
        """Run the load in a thread (while something else runs)."""
        self._thread = threading.Thread(target=self.run, name="wrk")
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.join()
        if self._server is not None:
            self._server.terminate()  # graceful: each worker writes its last batch at exit
            self._server.wait(60)
        engine = make_engine(self.env["DATABASE_URL"])
        with session_factory(engine)() as session:
            self.written = dict(
                session.execute(
                    select(Event.kind, func.count())
                    .where(Event.kind.in_((EventKind.OPEN, EventKind.CLICK)))
                    .group_by(Event.kind)
                ).all()
            )
        engine.dispose()

    def report(self) -> str:
        lines = [
            f"{name:6} {_figures(output)}  gunicorn CPU"
            f" {self.cpu[name] / max(_requests(output), 1) * 1e6:.0f} us/request"
            for name, output, _, _ in self.runs
        ]
        answered = sum(_requests(output) for _, output, _, _ in self.runs)
        written = sum(self.written.values())
        lines.append(
            f"answered {answered} requests; events written after a graceful stop: {written}"
            f" ({self.written.get(EventKind.OPEN, 0)} opens,"
            f" {self.written.get(EventKind.CLICK, 0)} clicks)"
        )
        return "\n".join(lines)

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.runs[0][2], self.runs[-1][3]


def describe(args: argparse.Namespace, database: str) -> str:
    """One line saying what was run."""
    offered = f"paced at {args.rate} req/s" if args.rate else "as fast as answered"
    return (
        f"{args.readers} deliveries, gunicorn {args.workers}x{args.threads},"
        f" wrk {THREADS} threads {args.connections} connections {offered}, {args.seconds} s each,"
        f" {database.split(':', 1)[0]}{' + Redis' if args.redis else ''}"
    )


def rate(
    times: list[datetime], start: datetime | None = None, end: datetime | None = None
) -> float:
    """Messages per second among these sent times, between start and end.

    By default from one second after the first (the workers' start-up left out) to the last.
    """
    if len(times) < 2:
        return 0.0
    ordered = sorted(times)
    start = max(start or ordered[0] + timedelta(seconds=1), ordered[0])
    end = min(end or ordered[-1], ordered[-1])
    span = (end - start).total_seconds()
    if span <= 0:
        return 0.0
    return sum(1 for t in ordered if start <= t <= end) / span


def _send_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        subscribers=args.send,
        workers=args.send_workers,
        concurrency=1,
        batch_size=500,
        postgres=args.postgres,
        redis=args.redis,
        sink="hebdo",
        timeout=1800,
    )


def with_send(args: argparse.Namespace, folder: Path) -> None:
    """The send alone, then the send with the web load on the same machine and database."""
    send_args = _send_args(args)
    quiet_dir, loaded_dir = folder / "quiet", folder / "loaded"
    quiet_dir.mkdir()
    loaded_dir.mkdir()
    print(describe(args, "postgresql" if args.postgres else "sqlite"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    quiet = send_run(send_args, quiet_dir, keep_times=True)
    load = Load(args, folder)
    loaded = send_run(send_args, loaded_dir, load=load.on, keep_times=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(load.report())
    start, end = load.window
    if loaded.sent_times and max(loaded.sent_times) < end:
        print("(the send ended before the load did: its rate is over the overlap only)")
    under = rate(loaded.sent_times, start, end)
    steady = rate(quiet.sent_times)
    phases = ", ".join(
        f"{rate(loaded.sent_times, began, ended):.0f} msg/s during the {name} load"
        for name, _, began, ended in load.runs
    )
    print(
        f"send of {args.send} messages, {args.send_workers} workers:"
        f" alone {quiet.messages / quiet.seconds:.0f} msg/s over the whole send"
        f" ({steady:.0f} steady); with the load {loaded.messages / loaded.seconds:.0f} msg/s"
        f" over the whole send, {under:.0f} msg/s while wrk ran ({phases};"
        f" {(under / steady - 1) * 100 if steady else 0:+.0f} % against the steady rate)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--readers", type=int, default=2000)
    # docker-compose.yml and the Dockerfile run `gunicorn --workers 3` (sync workers).
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--rate", type=int, default=0, help="requests/s to offer (paced); 0: as fast as answered"
    )
    parser.add_argument("--postgres", default=None, help='a server URL, or "auto"')
    parser.add_argument("--redis", default=None, help='with --send: a Redis URL, or "auto"')
    parser.add_argument("--send", type=int, default=0, help="readers of a send run meanwhile")
    parser.add_argument("--send-workers", type=int, default=2, help="Celery worker processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hebdo-track-")))
        if args.send:
            with_send(args, folder)
            return
        env = {
            "HEBDO_INSTANCE": str(folder),
            "SECRET_KEY": "bench-secret",
            "BASE_URL": "http://127.0.0.1",
            "DATABASE_URL": f"sqlite:///{folder / 'hebdo.sqlite'}",
        }
        if args.postgres:
            if args.postgres == "auto":
                cluster = stack.enter_context(PostgresCluster())
                env["DATABASE_URL"] = cluster.create_database("hebdo_bench")
            else:
                env["DATABASE_URL"] = args.postgres
        upgrade(Settings.from_env(env).database_url)
        with Load(args, folder).on(env) as load:
            print(describe(args, env["DATABASE_URL"]))
            load.run()
        print(load.report())


if __name__ == "__main__":
    main()
