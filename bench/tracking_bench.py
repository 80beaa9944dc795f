"""Load on the public tracking endpoints: the open pixel and the click redirect.

    python -m bench.tracking_bench                       # SQLite, 2 gunicorn workers, 10 s each
    python -m bench.tracking_bench --postgres auto --workers 4 --seconds 30

A fresh instance with an edition delivered to --readers readers (delivery rows
marked sent an hour ago, so every event goes through the full human/machine rules),
served by gunicorn as in production on loopback, then `wrk` (apt-get install wrk)
fetches the pixel and then a click of --readers different deliveries (a Lua
script walks through their signed URLs). Prints requests per second, p50 and p99
latency and the non-2xx/3xx answers of each, and checks the event rows written.

Not measured here (issue 11 asks for it): the same load while a 20,000-reader send
runs on the machine, and batched event writes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from service import tokens
from service.config import Settings
from service.db import make_engine, session_factory
from service.mail.mime import CLICK_PURPOSE, OPEN_PURPOSE
from service.models import Delivery, DeliveryStatus, Event, EventKind, utcnow
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
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def _prepare(settings: Settings, readers: int) -> list[int]:
    sessions = session_factory(make_engine(settings.database_url))
    with sessions.begin() as session:
        letter = factories.newsletter(session, "bench")
        factories.readers(session, letter, readers, prefix="bench")
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=1000)
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition.id)
            .values(status=DeliveryStatus.SENT, sent_at=utcnow() - timedelta(hours=1))
        )
        return list(session.scalars(select(Delivery.id).where(Delivery.edition_id == edition.id)))


def _wrk(base: str, paths: list[str], seconds: int, connections: int, folder: Path) -> str:
    urls = folder / f"urls-{len(paths)}-{time.monotonic_ns()}.txt"
    urls.write_text("\n".join(paths) + "\n")
    script = folder / "walk.lua"
    script.write_text(LUA % {"urls": urls, "agent": AGENT})
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--postgres", default=None, help='a server URL, or "auto"')
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hebdo-track-")))
        port = free_port()
        env = {
            **os.environ,
            "HEBDO_INSTANCE": str(folder),
            "SECRET_KEY": "bench-secret",
            "BASE_URL": f"http://127.0.0.1:{port}",
            "DATABASE_URL": f"sqlite:///{folder / 'hebdo.sqlite'}",
        }
        if args.postgres:
            if args.postgres == "auto":
                cluster = stack.enter_context(PostgresCluster())
                env["DATABASE_URL"] = cluster.create_database("hebdo_bench")
            else:
                env["DATABASE_URL"] = args.postgres
        settings = Settings.from_env(env)
        upgrade(settings.database_url)
        ids = _prepare(settings, args.readers)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "--threads",
             str(args.threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
             "service.app:create_app()"],
            env=env,
        )  # fmt: skip
        stack.callback(server.wait, 10)
        stack.callback(server.terminate)
        base = env["BASE_URL"]
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-s", "-o", "/dev/null", base + "/login"]).returncode:
            if time.monotonic() > deadline:
                sys.exit("gunicorn did not start")
            time.sleep(0.2)
        secret = settings.secret_key
        pixels = [f"/o/{tokens.sign(secret, OPEN_PURPOSE, i)}.gif" for i in ids]
        clicks = [f"/c/{tokens.sign(secret, CLICK_PURPOSE, i)}/{i % 6}" for i in ids]
        print(
            f"{args.readers} deliveries, gunicorn {args.workers}x{args.threads},"
            f" wrk 2 threads {args.connections} connections, {args.seconds} s,"
            f" {settings.database_url.split(':', 1)[0]}"
        )
        for name, paths in (("pixel", pixels), ("click", clicks)):
            print(f"{name:6} {_figures(_wrk(base, paths, args.seconds, args.connections, folder))}")
        sessions = session_factory(make_engine(settings.database_url))
        with sessions() as session:
            counts = dict(
                session.execute(select(Event.kind, func.count()).group_by(Event.kind)).all()
            )
        print(
            f"events written: {counts.get(EventKind.OPEN, 0)} opens,"
            f" {counts.get(EventKind.CLICK, 0)} clicks"
        )


if __name__ == "__main__":
    main()
