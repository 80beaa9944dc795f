"""Instructions per message of the send loop, counted by callgrind: a figure that load on the
machine does not move, to compare two versions of the code on a shared machine.

    python -m bench.callgrind_send --checkout . --checkout ../before --readers 200 1200

For each checkout (a work tree with its own `.venv`) and each reader count, a fresh SQLite
instance is prepared with that checkout's own code (readers, the sample French edition frozen
and snapshotted), then `send_pending` runs in one process under `valgrind --tool=callgrind`
into Hebdo's Maildir sink (in its own process, not counted). The difference between the two
reader counts, divided by the difference in readers, is the per-message cost: imports and
start-up cancel out. Wall-clock figures stay with `bench.send_bench`; these are instructions
(Ir), repeatable to a fraction of a percent whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

# Placeholder settings of a run; the base URL only has to be https for RFC 8058.
ENV = {
    "SECRET_KEY": "callgrind-bench",
    "BASE_URL": "https://lettre.exemple.org",
    "HEBDO_BATCH_SIZE": "100",
}


def _env(instance: Path, smtp_url: str = "smtp://127.0.0.1:1") -> dict[str, str]:
    return {
        **ENV,
        "HEBDO_INSTANCE": str(instance),
        "DATABASE_URL": f"sqlite:///{instance / 'hebdo.sqlite'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{instance / 'broker.sqlite'}",
        "SMTP_URL": smtp_url,
    }


def _api() -> dict[str, Any]:
    """The same four steps under the module names of either layout (before/after issue 10)."""
    try:
        from service.editions import store
        from service.sending import controls, loop
        from service.tools.migrate import upgrade

        return {
            "upgrade": upgrade,
            "create": store.create,
            "begin": controls.begin,
            "send_pending": loop.send_pending,
        }
    except ImportError:
        # The layout before issue 10 (service/ flat): absent from this tree, hence the ignores.
        from service.migrate import upgrade  # type: ignore[import-not-found,no-redef]

        from service import dispatch, editions, sending  # type: ignore[attr-defined]

        return {
            "upgrade": upgrade,
            "create": editions.create,  # type: ignore[attr-defined]
            "begin": sending.begin,  # type: ignore[attr-defined]
            "send_pending": dispatch.send_pending,
        }


def prepare(instance: Path, readers: int) -> int:
    """A migrated SQLite instance with `readers` confirmed readers and a snapshotted edition."""
    from sqlalchemy import insert

    from service.config import Settings
    from service.db import make_engine, session_factory
    from service.models import Newsletter, Subscriber, Subscription, SubscriptionStatus, utcnow
    from tests import factories

    api = _api()
    settings = Settings.from_env(_env(instance))
    api["upgrade"](settings.database_url)
    factory = session_factory(make_engine(settings.database_url))
    now = utcnow()
    with factory() as session, session.begin():
        letter = factories.newsletter(session, slug="banc")
        session.execute(
            insert(Subscriber),
            [{"email": f"lecteur{n}@exemple.org", "name": f"Lecteur {n}"} for n in range(readers)],
        )
        session.flush()
        ids = [row.id for row in session.query(Subscriber.id)]
        session.execute(
            insert(Subscription),
            [
                {
                    "newsletter_id": letter.id,
                    "subscriber_id": sid,
                    "status": SubscriptionStatus.CONFIRMED,
                    "consent_at": now,
                    "consent_source": "bench",
                    "confirmed_at": now,
                    "created_at": now,
                }
                for sid in ids
            ],
        )
    with factory() as session, session.begin():
        edition = api["create"](
            session, session.get(Newsletter, letter.id), factories.sample_data("fr")
        )
        api["begin"](
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=settings.batch_size,
        )
        return int(edition.id)


def send(instance: Path, edition_id: int, smtp_url: str) -> int:
    """send_pending in this process, as a worker's task would run it."""
    from service.config import Settings
    from service.db import make_engine, session_factory

    settings = Settings.from_env(_env(instance, smtp_url))
    factory = session_factory(make_engine(settings.database_url))
    report = _api()["send_pending"](factory, settings, edition_id, worker="callgrind")
    return int(report.sent)


def _instructions(callgrind_out: Path) -> int:
    match = re.search(r"^summary:\s+(\d+)", callgrind_out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary line in {callgrind_out}")
    return int(match.group(1))


def measure(checkout: Path, readers: int, workdir: Path) -> tuple[int, int]:
    """(instructions, messages sent) of one send_pending run under callgrind."""
    python = checkout / ".venv" / "bin" / "python"
    instance = workdir / f"{uuid.uuid4().hex[:8]}"
    instance.mkdir()
    me = str(Path(__file__).resolve())
    run_env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"}
    prepared = subprocess.run(
        [str(python), me, "_prepare", str(instance), str(readers)],
        check=True,
        capture_output=True,
        text=True,
        env=run_env,
        cwd=checkout,
    )
    edition_id = int(prepared.stdout.split()[-1])
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.smtp import SinkProcess

    out = workdir / f"callgrind.{instance.name}"
    with SinkProcess(instance / "maildir") as sink:
        sent = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                str(python),
                me,
                "_send",
                str(instance),
                str(edition_id),
                sink.url,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=run_env,
            cwd=checkout,
        )
    return _instructions(out), int(sent.stdout.split()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_prepare":
        print(prepare(Path(sys.argv[2]), int(sys.argv[3])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_send":
        print(send(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path, required=True)
    parser.add_argument("--readers", nargs=2, type=int, default=[200, 1200])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    small, large = args.readers
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hebdo-callgrind-") as tmp:
        for checkout in args.checkout:
            commit = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            ir_small, sent_small = measure(checkout.resolve(), small, Path(tmp))
            ir_large, sent_large = measure(checkout.resolve(), large, Path(tmp))
            per_message = (ir_large - ir_small) / (sent_large - sent_small)
            results.append(
                {
                    "checkout": str(checkout),
                    "commit": commit,
                    "sent": [sent_small, sent_large],
                    "instructions": [ir_small, ir_large],
                    "instructions_per_message": round(per_message),
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'checkout':<28} {'commit':<9} {'sent':>11} {'instructions / message':>24}")
    for row in results:
        sent = f"{row['sent'][0]}/{row['sent'][1]}"
        print(
            f"{row['checkout']:<28} {row['commit']:<9} {sent:>11} "
            f"{row['instructions_per_message']:>24,}"
        )


if __name__ == "__main__":
    main()
