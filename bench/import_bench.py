"""Benchmark the subscriber import: throughput and peak memory on a generated CSV.

    python -m bench.import_bench [--rows 10000,100000] [--postgres postgresql://…/postgres]

Each measurement runs in a fresh child process on a fresh database built by the
migrations, so ru_maxrss belongs to that import alone. Throughput is timed
without tracemalloc (it slows Python down several times); a second child
measures the tracemalloc peak. Similar peaks at 10,000 and 100,000 rows mean
memory stays flat.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service import newsletters
from service.audience import imports
from service.db import make_engine, session_factory, transaction
from service.tools.migrate import upgrade

FIRST_NAMES = ("Léa", "Hugo", "Chloé", "Louis", "Inès", "Jules", "Zoé", "Noé", "Anaïs", "René")
LAST_NAMES = ("Martin", "Bernard", "Lefèvre", "Durand", "Moreau", "Roux", "N'Diaye", "Girard")
CITIES = ("Lyon", "Paris, 11e", "Nantes", "Lille", "Saint-Étienne", "Brest")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """A semicolon CSV with a BOM, quoted values, 1% case-variant duplicates, 0.5% bad rows."""
    rng = random.Random(seed)  # noqa: S311 (sample data, not secrets)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["Courriel", "Prénom", "Nom", "Ville", "Langue", "Remarque"])
        for n in range(rows):
            draw = rng.random()
            if draw < 0.005:
                email = f"lecteur{n}.exemple.fr"  # no @: rejected
            elif draw < 0.015 and n > 0:
                email = f"Lecteur{rng.randrange(n)}@Exemple.FR"  # merged with an earlier row
            else:
                email = f"lecteur{n}@exemple.fr"
            writer.writerow(
                [
                    email,
                    rng.choice(FIRST_NAMES),
                    rng.choice(LAST_NAMES),
                    rng.choice(CITIES),
                    rng.choice(("fr", "fr-FR", "en")),
                    "abonné depuis le salon; relancer\nen mars" if n % 50 == 0 else "",
                ]
            )


def _fresh_database(backend: str, workdir: Path, postgres_url: str | None) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.sqlite'}", None
    assert postgres_url is not None
    name = f"hebdo_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One import in this process; returns the measurements."""
    workdir = Path(args.workdir)
    url, drop = _fresh_database(args.backend, workdir, args.postgres)
    try:
        upgrade(url)
        engine = make_engine(url)
        factory = session_factory(engine)
        with transaction(factory) as session:
            newsletter_id = newsletters.create(
                session, slug="bench", name="Banc d'essai", sender_email="banc@exemple.fr"
            ).id
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.trace:
            tracemalloc.start()
        started = time.perf_counter()
        report = imports.import_csv_batched(
            factory,
            newsletter_id,
            Path(args.csv),
            confirmed=False,
            confirmed_reason=None,
            batch_size=args.batch_size,
        )
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if args.trace else None
        engine.dispose()
    finally:
        if drop is not None:
            drop()
    return {
        "seconds": seconds,
        "rows_read": report.rows_read,
        "added": report.added,
        "merged": report.merged,
        "rejected": report.rejected_count,
        "tracemalloc_peak": peak,
        "rss_before_kib": rss_before,
        "rss_after_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _run_child(
    backend: str, csv_path: Path, workdir: Path, args: argparse.Namespace, trace: bool
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.import_bench",
        "--child",
        "--backend",
        backend,
        "--csv",
        str(csv_path),
        "--workdir",
        str(workdir),
        "--batch-size",
        str(args.batch_size),
    ]
    if trace:
        command.append("--trace")
    if args.postgres:
        command += ["--postgres", args.postgres]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{result.stderr}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; run the table (parent) or one measurement (child)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--postgres", default=None, help="URL of a server database to create in")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return

    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    header = (
        f"{'backend':<11}{'rows':>8}{'added':>8}{'merged':>8}{'rejected':>9}"
        f"{'seconds':>9}{'rows/s':>9}{'tracemalloc peak':>18}{'maxrss (start→end)':>22}"
    )
    print(f"batch size {args.batch_size}; CSV with BOM, ';', quoted newlines, 1% dup, 0.5% bad")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="hebdo-bench-") as tmp:
        workdir = Path(tmp)
        for rows in (int(count) for count in args.rows.split(",")):
            csv_path = workdir / f"subscribers-{rows}.csv"
            write_csv(csv_path, rows)
            for backend in backends:
                timed = _run_child(backend, csv_path, workdir, args, trace=False)
                traced = _run_child(backend, csv_path, workdir, args, trace=True)
                rate = timed["rows_read"] / timed["seconds"]
                rss = (
                    f"{timed['rss_before_kib'] / 1024:.0f}→{timed['rss_after_kib'] / 1024:.0f} MiB"
                )
                print(
                    f"{backend:<11}{timed['rows_read']:>8}{timed['added']:>8}"
                    f"{timed['merged']:>8}{timed['rejected']:>9}{timed['seconds']:>9.2f}"
                    f"{rate:>9.0f}{traced['tracemalloc_peak'] / 2**20:>14.1f} MiB{rss:>22}"
                )


if __name__ == "__main__":
    main()
