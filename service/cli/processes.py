"""Commands that run processes: init, worker, web, sink, and the all-in-one demo."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from service.broker import CeleryQueue
from service.cli.context import CliContext
from service.config import PROJECT_ROOT, write_instance_env
from service.models import Edition
from service.sending import controls, outbox
from service.tools import migrate, preflight

pass_context = click.make_pass_decorator(CliContext)


@click.command("init")
@pass_context
def init_command(ctx: CliContext) -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    ctx.settings.instance_path.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(ctx.settings.database_url)
    click.echo("database is at the latest schema")


def celery_worker_argv(concurrency: int, beat: bool, instance: Path) -> list[str]:
    """The command line of a Celery worker for Hebdo's tasks."""
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--loglevel", "INFO", "--concurrency", str(concurrency), "-Q", "hebdo",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if beat:
        argv += ["--beat", "--schedule", str(instance / "celerybeat-schedule")]
    return argv


# How long the broker check may take when web or worker starts; SMTP and DNS are left out.
STARTUP_CHECK_TIMEOUT = 2.0


def _startup_warnings(ctx: CliContext) -> None:
    """Print what `hebdo check` would object to (its fast checks), without stopping."""
    findings = preflight.run(ctx.settings, network=False, timeout=STARTUP_CHECK_TIMEOUT)
    for finding in findings:
        if finding.level is not preflight.Level.OK:
            click.echo(f"warning: {finding.message} (hebdo check)", err=True)


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=2, help="Worker processes.")
@click.option("--beat/--no-beat", default=False, help="Also run the scheduler (one per site).")
@pass_context
def worker_command(ctx: CliContext, concurrency: int, beat: bool) -> None:
    """Run a Celery worker (and optionally beat)."""
    _startup_warnings(ctx)
    argv = celery_worker_argv(concurrency, beat, ctx.settings.instance_path)
    os.execv(sys.executable, argv)  # noqa: S606 - replace this process with the worker


@click.command("beat")
@pass_context
def beat_command(ctx: CliContext) -> None:
    """Run the scheduler alone (production: exactly one per site)."""
    schedule = ctx.settings.instance_path / "celerybeat-schedule"
    ctx.settings.instance_path.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
            "--loglevel", "INFO", "--schedule", str(schedule)]  # fmt: skip
    os.execv(sys.executable, argv)  # noqa: S606 - replace this process with beat


@click.command("web")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=5000)
@pass_context
def web_command(ctx: CliContext, host: str, port: int) -> None:
    """Run the web app with a small threaded server (use gunicorn in production)."""
    from werkzeug.serving import run_simple

    from service.app import create_app

    ctx.require_schema()
    _startup_warnings(ctx)
    run_simple(host, port, create_app(ctx.settings), threaded=True, use_reloader=False)


@click.command("sink")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=2525)
@click.option("--maildir", type=click.Path(path_type=Path), default=None)
@pass_context
def sink_command(ctx: CliContext, host: str, port: int, maildir: Path | None) -> None:
    """Run the local SMTP sink that keeps every message in a Maildir."""
    from service.tools import sink

    target = maildir or ctx.settings.maildir_path or ctx.settings.instance_path / "maildir"
    sys.exit(sink.main(["--host", host, "--port", str(port), "--maildir", str(target)]))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"{name} exited with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise click.ClickException(f"{name} did not listen on port {port} within {timeout:.0f}s")


# How many times `hebdo demo` starts its worker again before giving up.
WORKER_RESTARTS = 5


@click.command("demo")
@click.option("--port", type=int, default=5000, help="Web port; every link in the mail uses it.")
@click.option("--once", is_flag=True, help="Exit once the sample edition has been delivered.")
@click.option(
    "--instance",
    type=click.Path(path_type=Path),
    default=PROJECT_ROOT / "instance" / "demo",
    help="Folder for the demo's database, broker and Maildir (reset on start).",
)
def demo_command(port: int, once: bool, instance: Path) -> None:
    """Run everything on the embedded default and send the sample edition."""
    instance = instance.resolve()
    if instance.exists():
        shutil.rmtree(instance)
    instance.mkdir(parents=True)
    sink_port = _free_port()
    env = {
        **os.environ,
        "HEBDO_INSTANCE": str(instance),
        "DATABASE_URL": f"sqlite:///{instance / 'hebdo.sqlite'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{instance / 'broker.sqlite'}",
        "SMTP_URL": f"smtp://127.0.0.1:{sink_port}",
        "BASE_URL": f"http://127.0.0.1:{port}",
        "HEBDO_MAILDIR": str(instance / "maildir"),
    }
    for name in ("REDIS_URL", "SECRET_KEY"):
        env.pop(name, None)
    os.environ.update(env)
    # The sink's port is new on every run: keep it (and the links' base) in the instance,
    # so a command pointed at this folder later, test-send say, reaches this sink.
    write_instance_env(instance, {"SMTP_URL": env["SMTP_URL"], "BASE_URL": env["BASE_URL"]})
    ctx = CliContext()
    settings = ctx.settings
    migrate.upgrade(settings.database_url)
    from service.tools import demo

    with ctx.transaction() as session:
        data = demo.seed(session)
    click.echo(
        f"sample newsletter '{data.newsletter_slug}' with {data.subscribers} confirmed readers"
    )

    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    log_dir = instance / "logs"
    log_dir.mkdir()

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
        )
        processes.append((name, process))
        return process

    hebdo = [sys.executable, "-m", "service.cli"]
    try:
        sink = start("sink", [*hebdo, "sink", "--port", str(sink_port)])
        _wait_for_port(sink_port, sink, "SMTP sink")
        web = start("web", [*hebdo, "web", "--port", str(port)])
        _wait_for_port(port, web, "web server")
        start("worker", celery_worker_argv(2, True, instance))

        with ctx.transaction() as session:
            edition = session.get(Edition, data.edition_id)
            if edition is None:
                raise click.ClickException("the sample edition vanished")
            started = controls.begin(
                session,
                edition,
                base_url=settings.base_url,
                templates_path=settings.email_templates_path,
                batch_size=settings.batch_size,
            )
        CeleryQueue(settings.broker_url).send_edition(data.edition_id, started.batches)
        click.echo(f"sending edition {data.edition_number} to {started.recipients} readers…")
        sent = _wait_sent(ctx, data.edition_id, processes, timeout=120)
        maildir = instance / "maildir"
        click.echo(f"delivered {sent} messages to the local SMTP sink ({maildir / 'new'})")
        base = settings.base_url
        click.echo(f"web version:  {base}/archive/{data.newsletter_slug}/{data.edition_number}")
        click.echo(f"outbox:       {base}/outbox/")
        click.echo(f"log in as:    {data.editor_email} / {data.editor_password}")
        click.echo(f"SMTP sink:    {env['SMTP_URL']} (saved in {instance / 'env'})")
        shown = _shown_path(instance)
        click.echo(f"command line: export HEBDO_INSTANCE={instance}")
        click.echo(f"              (or hebdo --instance {shown} newsletters list)")
        if once:
            return
        click.echo("serving; press Ctrl-C to stop")
        restarts = 0
        while True:
            dead = [name for name, p in processes if p.poll() is not None]
            if dead == ["worker"] and restarts < WORKER_RESTARTS:
                # A worker that exits (its broker on a full disk, say) is started again,
                # as a service manager would in production; its unfinished rows come
                # back through their leases.
                restarts += 1
                processes[:] = [(n, p) for n, p in processes if n != "worker"]
                click.echo(f"the worker stopped; starting it again ({restarts}/{WORKER_RESTARTS})")
                start("worker", celery_worker_argv(2, True, instance))
            elif dead:
                raise click.ClickException(f"{', '.join(dead)} stopped; logs in {log_dir}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _shown_path(path: Path) -> str:
    """path relative to the working directory when it lies under it (shorter to paste)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _wait_sent(
    ctx: CliContext,
    edition_id: int,
    processes: list[tuple[str, subprocess.Popen[bytes]]],
    *,
    timeout: float,
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes:
            if process.poll() is not None:
                raise click.ClickException(f"{name} exited with code {process.returncode}")
        with ctx.sessions() as session:
            progress = outbox.progress(session, edition_id)
        if progress.total and progress.done:
            return progress.sent
        time.sleep(0.3)
    raise click.ClickException("the sample edition was not delivered in time; see the logs")
