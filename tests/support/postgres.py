"""A throwaway PostgreSQL cluster: initdb into a temporary folder, pg_ctl on a free port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from tests.support import free_port

__all__ = ["PostgresCluster", "find_postgres_bindir"]

_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=200"
)
_START_ATTEMPTS = 5


def find_postgres_bindir() -> Path:
    """The folder holding initdb and pg_ctl: from PATH, else the newest /usr/lib/postgresql."""
    on_path = shutil.which("initdb")
    if on_path:
        bindir = Path(on_path).resolve().parent
        if (bindir / "pg_ctl").exists():
            return bindir
    candidates = sorted(
        (Path(found).parent for found in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "pg_ctl").exists():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries not found: no initdb/pg_ctl on PATH nor under "
        "/usr/lib/postgresql/*/bin. Install postgresql (Debian: apt-get install postgresql)."
    )


class PostgresCluster:
    """A private PostgreSQL server for one test session, removed on exit.

    initdb refuses to run as root, so under root every command runs as the `postgres`
    system user (via runuser) and the temporary folder belongs to that user.
    """

    host = "127.0.0.1"

    def __init__(self, bindir: Path | None = None, port: int | None = None) -> None:
        self._bindir = bindir
        self._requested_port = port
        self.port = 0
        self.base_dir: Path | None = None
        self._run_as: str | None = None
        self._running = False

    @property
    def data_dir(self) -> Path:
        """The cluster's PGDATA."""
        return self._base() / "data"

    @property
    def log_file(self) -> Path:
        """The server log pg_ctl writes to."""
        return self._base() / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{dbname}"

    def start(self) -> None:
        """initdb a fresh cluster and start it; raise RuntimeError with the output on failure."""
        if self._running:
            raise RuntimeError("PostgresCluster already started")
        bindir = self._bindir or find_postgres_bindir()
        for tool in ("initdb", "pg_ctl"):
            if not (bindir / tool).exists():
                raise RuntimeError(f"PostgreSQL binary {bindir / tool} does not exist")
        self._run_as = self._choose_user()
        self.base_dir = Path(tempfile.mkdtemp(prefix="hebdo-pg-"))
        try:
            self._prepare_dirs()
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                "initdb",
            )
            self._start_server(bindir)
        except BaseException:
            self._remove_base()
            raise
        self._running = True

    def stop(self) -> None:
        """Stop the server and delete its files."""
        if not self._running:
            self._remove_base()
            return
        bindir = self._bindir or find_postgres_bindir()
        self._running = False
        try:
            # The data is thrown away, so there is nothing to checkpoint.
            self._run(
                [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                "pg_ctl stop",
            )
        finally:
            self._remove_base()

    # Faults (tests/faults): the same cluster stops and starts again, data kept.

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process (pg_ctl -m fast|immediate) and keep its data and port."""
        bindir = self._bindir or find_postgres_bindir()
        self._run(
            [str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            "pg_ctl stop",
        )

    def start_server(self) -> None:
        """Start the stopped server again on the same port."""
        bindir = self._bindir or find_postgres_bindir()
        requested, self._requested_port = self._requested_port, self.port
        try:
            self._start_server(bindir)
        finally:
            self._requested_port = requested

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally copied from a template) and return its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with self.connect() as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect() as conn:
            conn.execute(statement)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection, for administration."""
        if not self._running:
            raise RuntimeError("PostgresCluster is not running")
        return psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("PostgresCluster has not been started")
        return self.base_dir

    @staticmethod
    def _choose_user() -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "Running as root, and initdb refuses to run as root, but there is no "
                "'postgres' system user to run it as. Create one (useradd -r postgres) "
                "or run the tests as an unprivileged user."
            ) from None
        if shutil.which("runuser") is None:
            raise RuntimeError("Running as root but `runuser` is missing to drop to 'postgres'")
        return "postgres"

    def _prepare_dirs(self) -> None:
        base = self._base()
        (base / "sock").mkdir()
        if self._run_as is not None:
            user = pwd.getpwnam(self._run_as)
            for path in (base, base / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)

    def _start_server(self, bindir: Path) -> None:
        output = ""
        for _attempt in range(_START_ATTEMPTS):
            self.port = self._requested_port or free_port()
            options = f"-p {self.port} -k {self._base() / 'sock'} {_SERVER_OPTIONS}"
            command = [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
            result = self._execute(command)
            if result.returncode == 0:
                return
            server_log = self._read_log()
            output = f"{result.stdout}\n--- server log ---\n{server_log}"
            # Another process may have taken the free port in between: pick another one.
            if "address already in use" not in server_log.lower() or self._requested_port:
                break
        raise RuntimeError(f"pg_ctl start failed (port {self.port}):\n{output}")

    def _read_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"

    def _execute(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        try:
            return subprocess.run(
                command,
                cwd=self._base(),  # the postgres user may not be allowed into the caller's cwd
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"{' '.join(command)} could not run: {error}") from error

    def _run(self, command: list[str], what: str) -> None:
        result = self._execute(command)
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed with exit status {result.returncode}: {' '.join(command)}\n"
                f"{result.stdout}\n--- server log ---\n{self._read_log()}"
            )

    def _remove_base(self) -> None:
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
