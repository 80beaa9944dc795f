"""A private redis-server on a free loopback port, without persistence."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support import free_port

__all__ = ["RedisServer"]

_START_ATTEMPTS = 5


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server as a child process for one test session; terminated on exit."""

    host = "127.0.0.1"

    def __init__(self, executable: str = "redis-server", startup_timeout: float = 15.0) -> None:
        self._executable = executable
        self._startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """redis-py / Celery URL of database 0."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.process is not None:
            raise RuntimeError("RedisServer already started")
        binary = shutil.which(self._executable)
        if binary is None:
            raise RuntimeError(
                f"{self._executable} not found on PATH; install it "
                "(Debian: apt-get install redis-server)."
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="hebdo-redis-"))
        try:
            self._start(binary)
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            raise

    def stop(self) -> None:
        """Terminate the server and remove its working folder."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # Faults (tests/faults): the same server goes away and comes back on its port.

    def kill(self) -> None:
        """SIGKILL the server (a crash); its port and folder stay for start_again()."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def start_again(self) -> None:
        """Start a stopped server again on the same port (empty: no persistence)."""
        binary = shutil.which(self._executable)
        if binary is None or self._workdir is None or self.process is not None:
            raise RuntimeError("RedisServer.start_again() needs a started, then killed, server")
        self._start(binary, port=self.port)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, binary: str, port: int | None = None) -> None:
        assert self._workdir is not None
        log_path = self._workdir / "redis.log"
        for _attempt in range(_START_ATTEMPTS):
            self.port = port or free_port()
            command = [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self._workdir),
            ]
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + self._startup_timeout
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                if _answers_ping(self.port):
                    self.process = process
                    return
                time.sleep(0.02)
            if process.poll() is None:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within "
                    f"{self._startup_timeout}s:\n{log_path.read_text(errors='replace')}"
                )
            output = log_path.read_text(errors="replace")
            # Another process may have taken the free port in between: pick another one.
            if "address already in use" not in output.lower() or port:
                raise RuntimeError(
                    f"redis-server exited with status {process.returncode}: "
                    f"{' '.join(command)}\n{output}"
                )
        raise RuntimeError(f"redis-server found no free port in {_START_ATTEMPTS} attempts")
