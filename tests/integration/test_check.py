"""`hebdo check` and `hebdo dkim generate` against real servers: the test's SMTP servers
(one without STARTTLS, one with), Redis, a database, and a DNS server on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from service.cli import cli
from service.config import Settings
from service.tools import preflight
from service.tools.migrate import upgrade
from tests.support import free_port
from tests.support.dns_server import DnsServer
from tests.support.redis_server import RedisServer
from tests.support.smtp import RecordingSmtpServer

ROOT = Path(__file__).resolve().parents[2]
SENDER = "lettre@example.org"


def hebdo(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(cli, list(args))


def lines(result: Result) -> dict[str, list[str]]:
    """The printed findings by code: {code: [level, …]}."""
    found: dict[str, list[str]] = {}
    for line in result.output.splitlines():
        match = re.match(r"(error|warning|ok) +([\w-]+) +", line)
        assert match, f"not a finding line: {line!r}"
        found.setdefault(match[2], []).append(match[1])
    return found


@pytest.fixture
def good_env(env: dict[str, str]) -> dict[str, str]:
    """A deployment with nothing to object to (the DKIM key aside)."""
    values = {
        **env,
        "BASE_URL": "https://lettre.example.org",
        "BOUNCE_DOMAIN": "bounces.example.org",
        "SECRET_KEY": "k" * 48,
    }
    created = hebdo(
        values, "newsletters", "create", "--slug", "lettre", "--name", "La Lettre",
        "--sender", SENDER,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    return values


def generate(env: dict[str, str], tmp_path: Path, *extra: str) -> tuple[Path, str]:
    """Run `hebdo dkim generate`; returns the key's path and the printed record line."""
    out = tmp_path / "keys" / ("ed.pem" if "--ed25519" in extra else "rsa.pem")
    result = hebdo(
        env, "dkim", "generate", "--selector", "hebdo1", "--domain", "Example.org",
        "--out", str(out), *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = re.search(r"^  (hebdo1\._domainkey\.example\.org\. IN TXT .+)$", result.output, re.M)
    assert record, result.output
    return out, record[1]


def test_dkim_generate_writes_a_private_key_and_check_prints_the_same_record(
    good_env: dict[str, str], tmp_path: Path
) -> None:
    path, record = generate(good_env, tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    # The record's p= is the key's public half (DER SubjectPublicKeyInfo, base64).
    value = "".join(re.findall(r'"([^"]*)"', record))
    assert value.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(value.split("p=", 1)[1]))
    assert public.public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', record))

    env = {
        **good_env,
        "DKIM_SELECTOR": "hebdo1",
        "DKIM_DOMAIN": "example.org",
        "DKIM_PRIVATE_KEY_PATH": str(path),
    }
    result = hebdo(env, "check")
    assert result.exit_code == 0, result.output
    assert set(lines(result)) == {
        "base-url", "secret-key", "database", "bounce-domain", "broker", "smtp", "dkim-key"
    }  # fmt: skip
    assert {level for levels in lines(result).values() for level in levels} == {"ok"}
    assert f"is valid (RSA 2048 bits); publish: {record}" in result.output

    # A second run refuses to overwrite the key that is (maybe) published already.
    again = hebdo(
        env, "dkim", "generate", "--selector", "hebdo1", "--domain", "example.org",
        "--out", str(path),
    )  # fmt: skip
    assert again.exit_code == 1
    assert "exists" in again.output
    assert serialization.load_pem_private_key(path.read_bytes(), None).public_key() == (
        key.public_key()
    )


def test_ed25519_key_is_checked_beside_the_rsa_one(
    good_env: dict[str, str], tmp_path: Path
) -> None:
    rsa_path, _ = generate(good_env, tmp_path)
    ed_path, ed_record = generate(good_env, tmp_path, "--ed25519")
    key = serialization.load_pem_private_key(ed_path.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ed_record.endswith(f'"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"')
    env = {
        **good_env,
        "DKIM_SELECTOR": "rsa1", "DKIM_DOMAIN": "example.org",
        "DKIM_PRIVATE_KEY_PATH": str(rsa_path),
        "DKIM_ED25519_SELECTOR": "hebdo1", "DKIM_ED25519_PRIVATE_KEY_PATH": str(ed_path),
    }  # fmt: skip
    result = hebdo(env, "check", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] is True
    records = [f["detail"]["record"] for f in document["findings"] if f["code"] == "dkim-key"]
    assert records[1] == ed_record
    assert records[0].startswith("rsa1._domainkey.example.org. IN TXT")


def test_bad_dkim_settings_are_errors(good_env: dict[str, str], tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key the check must flag
    weak = tmp_path / "weak.pem"
    weak.write_bytes(
        small.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    dkim = {"DKIM_SELECTOR": "s", "DKIM_DOMAIN": "example.org"}
    cases = {
        str(weak): ("warning", "under 2048 bits"),
        str(garbage): ("error", "cannot be used"),
        str(tmp_path / "missing.pem"): ("error", "No such file or directory"),
    }
    for path, (level, words) in cases.items():
        result = hebdo({**good_env, **dkim, "DKIM_PRIVATE_KEY_PATH": path}, "check")
        assert lines(result)["dkim-key"] == [level], result.output
        assert words in result.output
        assert result.exit_code == (1 if level == "error" else 0)
    half = hebdo({**good_env, "DKIM_SELECTOR": "s"}, "check")
    assert half.exit_code == 1
    assert "DKIM is half configured: set DKIM_DOMAIN, DKIM_PRIVATE_KEY_PATH" in half.output
    off = hebdo(good_env, "check")
    assert lines(off)["dkim"] == ["warning"]
    assert off.exit_code == 0


def test_embedded_defaults_warn_and_production_makes_them_errors(
    env: dict[str, str], tmp_path: Path
) -> None:
    instance = Path(env["HEBDO_INSTANCE"])
    plain = {k: v for k, v in env.items() if k not in ("SECRET_KEY", "BASE_URL")}
    result = hebdo(plain, "check")
    found = lines(result)
    assert found["base-url-https"] == ["warning"]
    assert found["base-url-host"] == ["warning"]
    assert found["bounce-domain"] == ["warning"]
    assert found["secret-key"] == ["warning"]
    assert f"generated in {instance / 'secret_key'}" in result.output
    assert result.exit_code == 0, result.output

    # The same settings on PostgreSQL (production-like): each is an error.
    settings = Settings.from_env(plain, database_url="postgresql+psycopg://h@db/h")
    for check in (preflight.check_base_url, preflight.check_secret_key):
        assert {f.level for f in check(settings)} == {preflight.Level.ERROR}
    assert preflight.check_bounce_domain(settings, [])[0].level is preflight.Level.ERROR


@pytest.mark.parametrize(
    ("bounce", "senders", "verdict"),
    [
        ("hebdo.localhost", [], "bounce-domain"),
        ("192.0.2.7", [], "bounce-domain"),
        ("[2001:db8::1]", [], "bounce-domain"),
        ("mailhost", [], "bounce-domain"),
        ("bounces.example.org", ["example.org", "news.example.org"], "ok"),
        ("example.co.uk", ["lettre.example.co.uk"], "ok"),
        ("bounces.example.net", ["example.org"], "bounce-alignment"),
        ("other.co.uk", ["example.co.uk"], "bounce-alignment"),
    ],
)
def test_bounce_domain_is_public_and_aligned_with_senders(
    bounce: str, senders: list[str], verdict: str
) -> None:
    settings = Settings.from_env({"BOUNCE_DOMAIN": bounce, "SECRET_KEY": "s"})
    (finding,) = preflight.check_bounce_domain(settings, senders)
    if verdict == "ok":
        assert finding.level is preflight.Level.OK
    else:
        assert finding.code == verdict
        assert finding.level is not preflight.Level.OK


def test_a_database_without_schema_or_behind_head_fails_the_check(
    env: dict[str, str], tmp_path: Path
) -> None:
    empty = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite'}"}
    result = hebdo(empty, "check")
    assert result.exit_code == 1
    assert lines(result)["database"] == ["error"]
    assert "has no Hebdo schema: run `hebdo init`" in result.output
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(old_url, "0006")
    old = hebdo({**env, "DATABASE_URL": old_url}, "check")
    assert old.exit_code == 1
    assert "outdated Hebdo schema (0006" in old.output
    assert "Traceback" not in result.output + old.output


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


class _Accept:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        return "250 OK"


@pytest.fixture
def starttls_server(tmp_path: Path) -> Iterator[int]:
    """An aiosmtpd server that offers STARTTLS (a self-signed certificate)."""
    port = free_port()
    controller = Controller(
        _Accept(), hostname="127.0.0.1", port=port, server_hostname="tls.localhost",
        tls_context=_self_signed(tmp_path),
    )  # fmt: skip
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a firewalled relay)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_every_smtp_relay_must_answer_and_offer_starttls_with_credentials(
    good_env: dict[str, str],
    smtp_server: RecordingSmtpServer,
    starttls_server: int,
    silent_port: int,
) -> None:
    dead = free_port()
    relays = [
        f"smtp://127.0.0.1:{starttls_server}",  # no credentials, STARTTLS offered
        f"smtp://ada:pw@127.0.0.1:{starttls_server}",  # credentials, STARTTLS offered
        f"smtp://127.0.0.1:{smtp_server.port}",  # no credentials, no TLS: fine
        f"smtp://ada:secret-pw@127.0.0.1:{smtp_server.port}",  # credentials in clear
        f"smtp://127.0.0.1:{dead}",
        f"smtp://127.0.0.1:{silent_port}",
    ]
    started = time.monotonic()
    result = hebdo({**good_env, "SMTP_URL": ",".join(relays)}, "check", "--timeout", "1")
    took = time.monotonic() - started
    smtp = [line for line in result.output.splitlines() if " smtp" in line[:20]]
    assert [line.split()[:2] for line in smtp] == [
        ["ok", "smtp"], ["ok", "smtp"], ["ok", "smtp"], ["error", "smtp-starttls"],
        ["error", "smtp"], ["error", "smtp"],
    ], result.output  # fmt: skip
    assert "(STARTTLS offered)" in smtp[0]
    assert "(no TLS)" in smtp[2]
    assert f"127.0.0.1:{smtp_server.port} does not offer STARTTLS" in smtp[3]
    assert "Connection refused" in smtp[4]
    assert "timed out" in smtp[5]
    assert "secret-pw" not in result.output
    assert result.exit_code == 1
    assert took < 10, f"the silent relay held the check for {took:.1f}s"


def test_broker_answers_ping_or_is_reported(
    good_env: dict[str, str], redis_server: RedisServer
) -> None:
    ok = hebdo({**good_env, "CELERY_BROKER_URL": redis_server.url}, "check")
    assert "answers PING" in ok.output
    assert lines(ok)["broker"] == ["ok"]
    dead = hebdo(
        {**good_env, "CELERY_BROKER_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"},
        "check", "--timeout", "1",
    )  # fmt: skip
    assert lines(dead)["broker"] == ["error"]
    assert "redis://:***@127.0.0.1" in dead.output
    assert dead.exit_code == 1


def test_dns_lookups_find_spf_dkim_and_dmarc_and_say_what_is_wrong(
    good_env: dict[str, str], tmp_path: Path
) -> None:
    path, record = generate(good_env, tmp_path)
    published = "".join(re.findall(r'"([^"]*)"', record))
    env = {
        **good_env,
        "DKIM_SELECTOR": "hebdo1",
        "DKIM_DOMAIN": "example.org",
        "DKIM_PRIVATE_KEY_PATH": str(path),
    }
    records = {
        "example.org": ["v=spf1 include:relay.example.net -all", "google-site-verification=x"],
        "bounces.example.org": ["v=spf1 include:relay.example.net -all"],
        "hebdo1._domainkey.example.org": [published],
        "_dmarc.example.org": ["v=DMARC1; p=quarantine; rua=mailto:d@example.org"],
    }
    with DnsServer(records) as server:

        def check() -> Result:
            return hebdo(
                env, "check", "--dns", "--nameserver", "127.0.0.1",
                "--dns-port", str(server.port), "--timeout", "2",
            )  # fmt: skip

        good = check()
        assert good.exit_code == 0, good.output
        assert lines(good)["spf"] == ["ok", "ok"]
        assert lines(good)["dkim-dns"] == ["ok"]
        assert "DMARC at _dmarc.example.org for example.org: p=quarantine" in good.output
        assert ("hebdo1._domainkey.example.org", "TXT") in server.queries

        # Another key published under the selector, no DMARC, two SPF records.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_p = base64.b64encode(
            other.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
        server.records["hebdo1._domainkey.example.org"] = [f"v=DKIM1; k=rsa; p={other_p}"]
        del server.records["_dmarc.example.org"]
        server.records["example.org"].append("v=spf1 a -all")
        bad = check()
        assert bad.exit_code == 1
        assert lines(bad)["dkim-dns"] == ["error"]
        assert f"holds another key than {path} (its p= differs): publish {record}" in bad.output
        assert "2 SPF records at example.org" in bad.output
        assert "no DMARC record at _dmarc.example.org" in bad.output

        # Nothing published at all.
        server.records.clear()
        missing = check()
        assert "no SPF record at example.org (sender domain)" in missing.output
        assert "no SPF record at bounces.example.org (BOUNCE_DOMAIN" in missing.output
        assert f"no DKIM record at hebdo1._domainkey.example.org: publish {record}" in (
            missing.output
        )

    # The server is gone: a lookup that fails is an error, within the timeout.
    gone = check()
    assert lines(gone)["dns"][0] == "error"
    assert "DNS lookup failed" in gone.output


@pytest.mark.slow
def test_worker_prints_the_fast_checks_as_warnings_when_it_starts(env: dict[str, str]) -> None:
    plain = {k: v for k, v in {**os.environ, **env}.items() if k != "BASE_URL"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1"],
        cwd=ROOT, env=plain, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(worker.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("celery@" in line or "ready" in line for line in seen):
            assert worker.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    warnings = [line for line in seen if line.startswith("warning: ")]
    assert any("BASE_URL http://127.0.0.1:5000 is not https" in line for line in warnings), seen
    assert any("BOUNCE_DOMAIN hebdo.localhost" in line for line in warnings), seen
    assert not any("SMTP relay" in line for line in seen), "SMTP is left to hebdo check"


@pytest.mark.parametrize(
    ("base_url", "codes"),
    [
        ("https://lettre.example.org", ["base-url"]),
        ("https://198.51.100.7", ["base-url-host"]),  # documentation range: not global
        ("https://8.8.8.8", ["base-url"]),
        ("http://lettre.example.org", ["base-url-https"]),
        ("http://127.0.0.1:5000", ["base-url-https", "base-url-host"]),
        ("https://hebdo.localhost", ["base-url-host"]),
        ("https://[::1]:8000", ["base-url-host"]),
    ],
)
def test_base_url_must_be_https_and_public(base_url: str, codes: list[str]) -> None:
    settings = Settings.from_env({"BASE_URL": base_url, "SECRET_KEY": "s"})
    assert [f.code for f in preflight.check_base_url(settings)] == codes


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_on_postgres_and_redis_the_embedded_defaults_are_errors(
    backend: str, env: dict[str, str]
) -> None:
    result = hebdo({**env, "BASE_URL": "http://hebdo.test"}, "check", "--json")
    assert result.exit_code == 1
    findings = {f["code"]: f for f in json.loads(result.output)["findings"]}
    assert findings["base-url-https"]["level"] == "error"
    assert findings["bounce-domain"]["level"] == "error"  # hebdo.localhost
    assert findings["database"]["level"] == "ok"
    assert findings["database"]["message"].startswith("the database at postgresql+psycopg://")
    assert findings["broker"]["message"].endswith("answers PING")
    assert findings["secret-key"]["level"] == "ok"


def test_web_prints_the_fast_checks_as_warnings_when_it_starts(env: dict[str, str]) -> None:
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "web", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env, "BOUNCE_DOMAIN": "192.0.2.1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(web.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(f":{port}" in line for line in seen):  # werkzeug's "Running on …"
            assert web.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            time.sleep(0.2)
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
    assert "warning: BOUNCE_DOMAIN 192.0.2.1 is not a public domain" in "".join(seen)
