"""CPU per message of personalise() with and without DKIM, before and after the fast signer.

    python -m bench.dkim_bench [--samples 2000]

On the sample French edition frozen as a send freezes it: personalise() alone;
personalise() then dkimpy's dkim.sign() over the whole message (how Hebdo signed
before, kept here as the "before" figure); personalise() with Hebdo's signer
(service/mail/dkim.py), RSA-2048 alone and RSA + Ed25519; and the bare RSA-2048
and Ed25519 operations through OpenSSL, the floor. Each figure is the best of
three runs of process CPU time. A busy machine inflates all of them alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from service.config import Settings
from service.db import make_engine, session_factory
from service.mail.mime import PreparedEdition, personalise
from service.models import Edition, utcnow
from service.sending import controls, loop
from service.tools.migrate import upgrade
from tests import factories

OLD_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
]  # fmt: skip  (what the dkimpy path signed)


def _write_keys(folder: Path) -> tuple[Path, Path]:
    rsa_path, ed_path = folder / "rsa.pem", folder / "ed25519.pem"
    pem = serialization.Encoding.PEM
    none = serialization.NoEncryption()
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_path.write_bytes(
        rsa_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none)
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_path.write_bytes(ed_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none))
    return rsa_path, ed_path


def _prepared(workdir: Path, **dkim_settings: object) -> PreparedEdition:
    url = f"sqlite:///{workdir / 'micro.sqlite'}"
    if not (workdir / "micro.sqlite").exists():
        upgrade(url)
        factory = session_factory(make_engine(url))
        with factory() as session, session.begin():
            letter = factories.newsletter(session)
            edition = factories.edition(session, letter)
            controls.begin(
                session,
                edition,
                base_url="https://lettre.exemple.org",
                templates_path=Settings.email_templates_path,
                batch_size=200,
            )
    settings = Settings.from_env(
        {"HEBDO_INSTANCE": str(workdir), "DATABASE_URL": url, "SECRET_KEY": "micro"}
    )
    settings = replace(settings, **dkim_settings)  # type: ignore[arg-type]
    factory = session_factory(make_engine(url))
    with factory() as session:
        frozen = session.get(Edition, 1)
        assert frozen is not None
        return loop.prepare_edition(frozen, settings)


def _best_of_three(call: Callable[[int], object], samples: int) -> float:
    runs = []
    for _ in range(3):
        started = time.process_time()
        for n in range(samples):
            call(n)
        runs.append((time.process_time() - started) / samples * 1e6)
    return min(runs)


def measure(samples: int = 2000) -> dict[str, float]:
    """µs of CPU per message for each way of building (and signing) it."""
    now = utcnow()
    with tempfile.TemporaryDirectory(prefix="hebdo-dkim-bench-") as tmp:
        workdir = Path(tmp)
        rsa_path, ed_path = _write_keys(workdir)
        keys = {"dkim_selector": "hebdo", "dkim_domain": "exemple.org"}
        plain = _prepared(workdir)
        rsa_only = _prepared(workdir, **keys, dkim_private_key_path=rsa_path)
        both = _prepared(
            workdir,
            **keys,
            dkim_private_key_path=rsa_path,
            dkim_ed25519_selector="hebdo-ed",
            dkim_ed25519_private_key_path=ed_path,
        )
        pem = rsa_path.read_bytes()
        rsa_key = serialization.load_pem_private_key(pem, password=None)
        ed_key = serialization.load_pem_private_key(ed_path.read_bytes(), password=None)
        assert isinstance(rsa_key, rsa.RSAPrivateKey)
        assert isinstance(ed_key, ed25519.Ed25519PrivateKey)

    import dkim  # the verifier of the tests; here only to measure how Hebdo used to sign

    def build(prepared: PreparedEdition) -> Callable[[int], object]:
        return lambda n: personalise(prepared, n, f"lecteur{n}@exemple.org", f"Lecteur {n}", now)

    def dkimpy(n: int) -> object:
        data = personalise(plain, n, f"lecteur{n}@exemple.org", f"Lecteur {n}", now).data
        return dkim.sign(data, b"hebdo", b"exemple.org", pem, include_headers=OLD_HEADERS)

    digest = b"x" * 600  # about what the signed headers weigh
    slow = max(50, samples // 20)
    return {
        "personalise()": _best_of_three(build(plain), samples),
        "personalise() + dkimpy sign (before)": _best_of_three(dkimpy, slow),
        "personalise() + DKIM RSA-2048 (after)": _best_of_three(build(rsa_only), samples // 2),
        "personalise() + DKIM RSA-2048 + Ed25519 (after)": _best_of_three(
            build(both), samples // 2
        ),
        "RSA-2048 signature alone (OpenSSL)": _best_of_three(
            lambda n: rsa_key.sign(digest, padding.PKCS1v15(), hashes.SHA256()), samples // 2
        ),
        "Ed25519 signature alone (OpenSSL)": _best_of_three(lambda n: ed_key.sign(digest), samples),
        "message bytes": float(len(personalise(plain, 1, "l@exemple.org", "L", now).data)),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the figures as a Markdown table (and as JSON with --json)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    load = Path("/proc/loadavg").read_text().split()[0]
    figures = measure(args.samples)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    size = figures.pop("message bytes")
    print(f"Sample edition, {size:,.0f} bytes per message; load average before: {load}\n")
    print("| per message | µs of CPU |\n|---|---:|")
    for name, micros in figures.items():
        print(f"| {name} | {micros:,.0f} |")


if __name__ == "__main__":
    main()
