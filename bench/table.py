"""One table from one run: Hebdo with DKIM off and on, against the SMTP ceiling of the machine.

    python -m bench.table --subscribers 100000 --workers 2              # both back ends
    python -m bench.table --subscribers 2000 --modes sqlite             # a quick check

For each back end (the embedded default, SQLite + the SQL broker; PostgreSQL + Redis,
throwaway servers) and each of DKIM off and on (RSA-2048, a key made for the run),
send_bench.send_run sends the sample edition to N readers through W real Celery workers
into Postfix's smtp-sink. The ceiling is Postfix's smtp-source sending Hebdo's own
signed message bytes with the same number of sessions, reusing its connections (-d),
into the same kind of sink, in the same run. Each row: messages/s and its ratio to the
ceiling, worker CPU per 1,000 messages (all workers together), time from the enqueue to
the first and the last message marked sent, freeze + snapshot time and the peak RSS of
a worker process. A sample of the DKIM run's messages, built by the same prepared
edition the run used, is verified with dkimpy and parsed with the strict email policy.

Then django-newsletter (bench/peer.py: from the package registry, in its own virtual
environment, a minimal Django project around it) sends the same edition's HTML to
--peer-readers readers (1,000) into the same kind of sink, one process as its
`submit_newsletter` command runs, for Hebdo / django-newsletter side by side.

The figures also go to bench/results.json (--json to choose another file). Postfix
(`apt-get install postfix`: smtp-source and smtp-sink) is needed here only; no test
needs it. On a shared machine the figures are noisy: publish those of a quiet one.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.errors
import email.policy
import json
import shutil
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import peer, send_bench
from service.mail.mime import personalise
from service.models import utcnow

SELECTOR, DOMAIN = "banc", "hebdo.example"  # the bench newsletter sends from banc@hebdo.example
RESULTS = Path(__file__).resolve().parent / "results.json"
MODES = {
    "sqlite": ("SQLite + SQL broker (embedded default)", None, None),
    "postgres": ("PostgreSQL + Redis", "auto", "auto"),
}


def _key(folder: Path) -> tuple[Path, bytes]:
    """An RSA-2048 key for the run, and the DNS record that would publish it."""
    key = rsa.generate_private_key(65537, 2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def verify_sample(prepared: Any, record: bytes, count: int = 50) -> dict[str, int]:
    """How many of `count` messages of the run's edition pass dkimpy and the strict parser."""
    import dkim  # the verifier of the tests, here too: an implementation that is not Hebdo's

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    verified = parsed = 0
    now = utcnow()
    for n in range(count):
        name = ["Lecteur", 'Zoë "la" Brontë', "山田 太郎", ""][n % 4]
        data = personalise(prepared, 10_000_000 + n, f"lecteur{n}@exemple.org", name, now).data
        verified += bool(dkim.DKIM(data).verify(dnsfunc=dns))
        try:
            email.message_from_bytes(data, policy=email.policy.strict)
        except (email.errors.MessageError, ValueError) as exc:  # a defect: counted, and said
            print(f"strict parser: message {n}: {exc}")
        else:
            parsed += 1
    return {"messages": count, "dkim_verified": verified, "strict_parse": parsed}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every row of the table, and the ceiling, as one dictionary."""
    load = Path("/proc/loadavg").read_text().split()[0]
    rows: list[dict[str, Any]] = []
    sample: bytes | None = None
    verification: dict[str, int] | None = None
    with tempfile.TemporaryDirectory(prefix="hebdo-bench-table-") as tmp:
        workdir = Path(tmp)
        key_path, record = _key(workdir)
        dkim_env = {
            "DKIM_SELECTOR": SELECTOR,
            "DKIM_DOMAIN": DOMAIN,
            "DKIM_PRIVATE_KEY_PATH": str(key_path),
        }
        for mode in args.modes:
            label, postgres, redis = MODES[mode]
            for signed in (False, True):
                folder = workdir / f"{mode}-{'dkim' if signed else 'plain'}"
                folder.mkdir()
                namespace = argparse.Namespace(
                    **{**vars(args), "postgres": postgres, "redis": redis, "sink": "postfix"}
                )
                result = send_bench.send_run(namespace, folder, dkim_env if signed else None)
                workers = [p for p in result.processes if p.role.startswith("worker")]
                rows.append(
                    {
                        "mode": label,
                        "dkim": signed,
                        "messages": result.messages,
                        "seconds": result.seconds,
                        "messages_per_second": result.messages / result.seconds,
                        "worker_cpu_per_1000": sum(p.cpu for p in workers) / result.messages * 1000,
                        "first_message_seconds": result.first_seconds,
                        "last_message_seconds": result.last_seconds,
                        "snapshot_seconds": result.snapshot_seconds,
                        "worker_peak_mib": max(p.peak_mib for p in workers),
                        "message_bytes": result.message_bytes,
                    }
                )
                if signed and verification is None:
                    verification = verify_sample(result.prepared, record)
                    sample = personalise(
                        result.prepared, 1, "lecteur1@exemple.org", "Lecteur 1", utcnow()
                    ).data
        assert sample is not None
        (workdir / "scheduled").mkdir()
        scheduled = send_bench.scheduled_start(workdir / "scheduled")
        message_file = workdir / "message.eml"
        message_file.write_bytes(sample)
        sessions = args.workers * args.concurrency
        # A ceiling is a best: one run of smtp-source that something else on the machine
        # slowed would flatter every ratio, so it is the fastest of three.
        tries = []
        for n in range(3):
            (workdir / f"source{n}").mkdir()
            tries.append(
                send_bench.smtp_source(
                    "postfix",
                    workdir / f"source{n}",
                    len(sample),
                    args.source_messages,
                    sessions,
                    message_file,
                )
            )
        ceiling = max(tries, key=lambda t: t["rate"] if t else 0.0)
        peer_figures = None
        if args.peer_readers:
            parsed = email.message_from_bytes(sample, policy=email.policy.default)
            html_part = parsed.get_body(("html",)) if isinstance(parsed, EmailMessage) else None
            assert html_part is not None
            (workdir / "peer").mkdir()
            with send_bench.sink("postfix", workdir / "peer") as (url, _pid):
                peer_figures = peer.run(
                    args.peer_venv or workdir,
                    args.peer_readers,
                    url.removeprefix("smtp://"),
                    str(html_part.get_content()),
                )
    if ceiling is None:
        raise SystemExit("Postfix's smtp-source is missing: apt-get install postfix")
    if peer_figures is not None:
        peer_figures["ratio_to_ceiling"] = peer_figures["messages_per_second"] / ceiling["rate"]
        peer_figures["cpu_per_1000"] = peer_figures["cpu"] / peer_figures["messages"] * 1000
    for row in rows:
        row["ratio_to_ceiling"] = row["messages_per_second"] / ceiling["rate"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": send_bench.machine(),
        "load_average_before": load,
        "subscribers": args.subscribers,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "ceiling": {
            "tool": f"smtp-source -s {sessions} -d -F <Hebdo's signed message> into smtp-sink",
            "messages": args.source_messages,
            "messages_per_second": ceiling["rate"],
            "tries_messages_per_second": [t["rate"] for t in tries if t],
            "message_bytes": len(sample),
        },
        "dkim_sample": verification,
        "scheduled_start": scheduled,
        "runs": rows,
        "django_newsletter": peer_figures,
    }


def table(figures: dict[str, Any]) -> str:
    """The figures as one Markdown table."""
    ceiling = figures["ceiling"]
    lines = [
        f"{figures['date']}, {figures['machine']}; load average before: "
        f"{figures['load_average_before']}",
        f"{figures['subscribers']:,} readers, {figures['workers']} worker(s) x concurrency "
        f"{figures['concurrency']}, batch {figures['batch_size']}, into Postfix's smtp-sink; "
        f"ceiling: {ceiling['tool']}, {ceiling['messages']:,} x {ceiling['message_bytes']:,} "
        "bytes, the best of "
        + ", ".join(f"{rate:,.0f}" for rate in ceiling.get("tries_messages_per_second", []))
        + " messages/s",
        "",
        "| sender | DKIM | messages/s | of the ceiling | worker CPU s / 1,000 | first message"
        " | last message | freeze + snapshot | worker peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| smtp-source (ceiling) | signed bytes | {ceiling['messages_per_second']:,.0f} | 1.00 |"
        " | | | | |",
    ]
    lines.extend(
        f"| Hebdo, {row['mode']} | {'RSA-2048' if row['dkim'] else 'off'} | "
        f"{row['messages_per_second']:,.0f} | {row['ratio_to_ceiling']:.2f} | "
        f"{row['worker_cpu_per_1000']:.2f} | {row['first_message_seconds']:.2f} s | "
        f"{row['last_message_seconds']:.1f} s | {row['snapshot_seconds']:.2f} s | "
        f"{row['worker_peak_mib']:.0f} MiB |"
        for row in figures["runs"]
    )
    other = figures.get("django_newsletter")
    if other:
        lines.append(
            f"| {other['package']} (one process, {other['messages']:,} readers) | off | "
            f"{other['messages_per_second']:,.0f} | {other['ratio_to_ceiling']:.2f} | "
            f"{other['cpu_per_1000']:.2f} | | {other['seconds']:.1f} s | | |"
        )
        hebdo = max(
            (r for r in figures["runs"] if not r["dkim"]), key=lambda r: r["messages_per_second"]
        )
        lines += [
            "",
            f"Hebdo ({hebdo['mode']}, DKIM off) / django-newsletter: "
            f"{hebdo['messages_per_second'] / other['messages_per_second']:.1f} times the "
            f"messages per second (django-newsletter's message: {other['message_bytes']:,} "
            "bytes, one SMTP connection per message, as it sends).",
        ]
    scheduled = figures.get("scheduled_start")
    if scheduled:
        lines += [
            "",
            f"Scheduled start (embedded default, one worker running the beat, "
            f"{scheduled['readers']:,} readers): first message "
            f"{scheduled['first_message_after_scheduled_seconds']:.2f} s after the scheduled "
            f"time, last {scheduled['last_message_after_scheduled_seconds']:.2f} s after it.",
        ]
    sample = figures["dkim_sample"]
    if sample:
        lines += [
            "",
            f"DKIM sample of the signed run's edition: {sample['dkim_verified']}/"
            f"{sample['messages']} verified by dkimpy, {sample['strict_parse']}/"
            f"{sample['messages']} parsed by the strict email policy.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--modes", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--source-messages", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument(
        "--peer-readers", type=int, default=1000, help="django-newsletter's readers (0: skip it)"
    )
    parser.add_argument(
        "--peer-venv", type=Path, help="where to keep django-newsletter's virtual environment"
    )
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if not (shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists()):
        raise SystemExit("Postfix's smtp-sink is missing: apt-get install postfix")
    figures = run(args)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(table(figures))
    print(f"\n(also in {args.json})")


if __name__ == "__main__":
    main()
