"""Where a worker's CPU goes per message: the send loop profiled, grouped by what it does.

    python -m bench.profile_send --readers 3000            # DKIM off and on

A fresh SQLite instance (bench.callgrind_send.prepare: readers and the sample French edition,
frozen and snapshotted), Postfix's smtp-sink in its own process, and `send_pending` in this
process under cProfile. The profile is grouped by what the code does (the signature, hashing,
building the message, the SMTP client, the database...) and printed as time per message and
share of the total; the time spent waiting for the relay's replies (the socket reads) is
printed apart, since it is no CPU of the worker's. cProfile adds a cost to every Python call,
so the Python-heavy groups read high next to the C ones (OpenSSL, sockets, SQLite); the CPU
per message measured without the profiler is printed for comparison.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import callgrind_send, send_bench

WAITING = "waiting for the relay's replies (socket reads)"
# (group, test on (file, function name)), first match wins.
GROUPS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("RSA-2048 signature (OpenSSL)", lambda f, n: "RSAPrivateKey" in n),
    ("SHA-256 of the canonical body", lambda f, n: "_hashlib.HASH" in n or "openssl_sha256" in n),
    ("DKIM header and canonical spans", lambda f, n: f.endswith("service/mail/dkim.py")),
    ("sending the bytes (socket, kernel)", lambda f, n: "sendall" in n or "'send'" in n),
    (WAITING, lambda f, n: "recv_into" in n),
    ("SMTP client (smtplib, transport)", lambda f, n: f.endswith(("smtplib.py", "transport.py"))),
    (
        "building the message (tokens, splicing, headers)",
        lambda f, n: (
            f.endswith(("mail/mime.py", "service/tokens.py", "hmac.py", "base64.py"))
            or "HMAC" in n
            or "b2a" in n
            or "strftime" in n
        ),
    ),
    ("SQLite (claims, gate read, sent marks)", lambda f, n: "sqlite3" in n),
    ("SQLAlchemy (claims, batch bookkeeping)", lambda f, n: "sqlalchemy" in f),
    ("send loop", lambda f, n: "service/sending" in f),
]


def _group(filename: str, name: str) -> str:
    for label, test in GROUPS:
        if test(filename, name):
            return label
    return "other (Python runtime, logging, datetime...)"


def _key(folder: Path) -> Path:
    path = folder / "dkim.pem"
    key = rsa.generate_private_key(65537, 2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def profile(readers: int, dkim: Path | None, workdir: Path) -> tuple[dict[str, float], float]:
    """CPU seconds per group for `readers` messages, and the unprofiled CPU per message."""
    if dkim is not None:
        callgrind_send.ENV.update(
            {
                "DKIM_SELECTOR": "banc",
                "DKIM_DOMAIN": "exemple.org",
                "DKIM_PRIVATE_KEY_PATH": str(dkim),
            }
        )
    else:
        for name in ("DKIM_SELECTOR", "DKIM_DOMAIN", "DKIM_PRIVATE_KEY_PATH"):
            callgrind_send.ENV.pop(name, None)
    groups: dict[str, float] = defaultdict(float)
    plain = 0.0
    for profiled in (False, True):
        instance = workdir / f"{'dkim' if dkim else 'plain'}-{profiled}"
        instance.mkdir()
        edition_id = callgrind_send.prepare(instance, readers)
        with send_bench.sink("postfix", instance) as (url, _pid):
            if not profiled:
                started = time.process_time()
                sent = callgrind_send.send(instance, edition_id, url)
                plain = (time.process_time() - started) / sent
                continue
            profiler = cProfile.Profile()
            profiler.enable()
            sent = callgrind_send.send(instance, edition_id, url)
            profiler.disable()
        stats = pstats.Stats(profiler)
        for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
            groups[_group(filename, name)] += row[2] / sent  # tottime: the function's own
    return dict(groups), plain


def main(argv: list[str] | None = None) -> None:
    """Profile DKIM off and on; print one table per run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=3000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hebdo-profile-") as tmp:
        workdir = Path(tmp)
        key = _key(workdir)
        for dkim in (None, key):
            groups, plain = profile(args.readers, dkim, workdir)
            waiting = groups.pop(WAITING, 0.0)
            total = sum(groups.values())
            print(
                f"\n### DKIM {'RSA-2048' if dkim else 'off'}: {args.readers:,} messages, "
                f"{1e6 * plain:,.0f} µs of CPU per message without the profiler, "
                f"{1e6 * total:,.0f} µs with it, and {1e6 * waiting:,.0f} µs waiting for the "
                "relay's replies\n"
            )
            print("| where | µs per message (profiled) | share |\n|---|---:|---:|")
            for label, seconds in sorted(groups.items(), key=lambda item: -item[1]):
                print(f"| {label} | {1e6 * seconds:,.0f} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
