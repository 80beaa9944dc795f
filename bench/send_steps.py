"""What two workers wait for: each step of the send loop timed by wall clock and by CPU.

    python -m bench.send_steps --readers 20000            # DKIM on (RSA-2048)
    python -m bench.send_steps --readers 20000 --no-dkim

A fresh SQLite instance (bench.callgrind_send.prepare), Postfix's smtp-sink in its own
process, and two processes running `send_pending` on the same edition, as two workers
would. In each, the loop's steps are wrapped to add up their wall time, their CPU time
(the thread's clock) and how many took over 0.9 ms, the shortest sleep of SQLite's own
busy handler. The gap between a step's wall time and its CPU is what the worker waited
for there: the relay, the other worker's write lock, or a core. `/proc` gives the sink's
CPU and how busy the machine's cores were.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import callgrind_send, profile_send, send_bench

SLOW_SECONDS = 0.0009
_Totals = dict[str, float]


def _timed(owner: Any, name: str, totals: defaultdict[str, float]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            wall = time.perf_counter() - wall
            totals[f"{name} wall"] += wall
            totals[f"{name} cpu"] += time.thread_time() - cpu
            totals[f"{name} slow"] += wall > SLOW_SECONDS

    setattr(owner, name, wrapper)


def _worker(instance: Path, edition_id: int, url: str, name: str, results: Any) -> None:
    from service.config import Settings
    from service.db import make_engine, session_factory
    from service.mail import transport
    from service.sending import loop

    totals: defaultdict[str, float] = defaultdict(float)
    for owner, step in (
        (loop._Ahead, "build"),
        (transport.SmtpTransport, "start"),
        (transport.SmtpTransport, "finish"),
        (loop._Gate, "mark_sent"),
        (loop._Gate, "check"),
    ):
        _timed(owner, step, totals)
    settings = Settings.from_env(callgrind_send._env(instance, url))
    factory = session_factory(make_engine(settings.database_url))
    wall, cpu = time.perf_counter(), time.process_time()
    report = loop.send_pending(factory, settings, edition_id, worker=name)
    totals["all wall"], totals["all cpu"] = time.perf_counter() - wall, time.process_time() - cpu
    totals["sent"] = report.sent
    results.put(dict(totals))


def _idle_seconds() -> float:
    return int(Path("/proc/stat").read_text().split()[4]) / send_bench.CLOCK_TICKS


def run(readers: int, dkim: bool, workdir: Path) -> tuple[dict[str, float], list[_Totals]]:
    """The machine's figures and each worker's step totals for one two-worker send."""
    if dkim:
        key = profile_send._key(workdir)
        callgrind_send.ENV.update(
            {
                "DKIM_SELECTOR": "banc",
                "DKIM_DOMAIN": "exemple.org",
                "DKIM_PRIVATE_KEY_PATH": str(key),
            }
        )
    instance = workdir / "instance"
    instance.mkdir()
    edition_id = callgrind_send.prepare(instance, readers)
    with send_bench.sink("postfix", instance) as (url, sink_pid):
        results: Any = multiprocessing.Queue()
        sink_before, idle_before, started = (
            send_bench.cpu_seconds(sink_pid),
            _idle_seconds(),
            time.monotonic(),
        )
        workers = [
            multiprocessing.Process(
                target=_worker, args=(instance, edition_id, url, f"w{n}", results)
            )
            for n in range(2)
        ]
        for worker in workers:
            worker.start()
        totals = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        seconds = time.monotonic() - started
        sink = send_bench.cpu_seconds(sink_pid) - sink_before
        idle = _idle_seconds() - idle_before
    sent = sum(t["sent"] for t in totals)
    machine = {
        "messages_per_second": sent / seconds,
        "sink_cpu_ms_per_message": 1000 * sink / sent,
        "cores_busy": 1 - idle / (seconds * (os.cpu_count() or 1)),
    }
    return machine, totals


def main(argv: list[str] | None = None) -> None:
    """Run one two-worker send and print where each worker's time went."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=20000)
    parser.add_argument("--no-dkim", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hebdo-steps-") as tmp:
        machine, totals = run(args.readers, not args.no_dkim, Path(tmp))
    print(
        f"{args.readers:,} readers, DKIM {'off' if args.no_dkim else 'RSA-2048'}: "
        f"{machine['messages_per_second']:,.0f} messages/s, smtp-sink "
        f"{machine['sink_cpu_ms_per_message']:.3f} ms of CPU per message, cores "
        f"{machine['cores_busy']:.0%} busy\n"
    )
    print("| worker | step | wall ms / message | CPU ms / message | over 0.9 ms per 1,000 |")
    print("|---|---|---:|---:|---:|")
    for n, worker in enumerate(totals):
        sent = worker["sent"]
        for step in ("build", "start", "finish", "mark_sent", "check", "all"):
            slow = f"{1000 * worker[step + ' slow'] / sent:.0f}" if step != "all" else ""
            print(
                f"| w{n} | {step} | {1000 * worker[step + ' wall'] / sent:.3f} | "
                f"{1000 * worker[step + ' cpu'] / sent:.3f} | {slow} |"
            )


if __name__ == "__main__":
    main()
