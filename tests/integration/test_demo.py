"""README's first command: `hebdo demo --once` sends the sample edition for real."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_once_delivers_the_sample_edition_with_links_to_its_own_server(
    tmp_path: Path,
) -> None:
    port = free_port()
    instance = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--once", "--port", str(port),
         "--instance", str(instance)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^delivered 8 messages", result.stdout, re.M), result.stdout
    files = sorted((instance / "maildir" / "new").iterdir())
    assert len(files) == 8
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        html_part = message.get_body(("html",))
        assert html_part is not None
        html = html_part.get_content()
        links = re.findall(r'href="(http://127\.0\.0\.1:\d+/[^"]+)"', html)
        assert links, "the demo mail links to the demo server"
        assert {link.split("/")[2] for link in links} == {f"127.0.0.1:{port}"}
        assert message["Return-Path"].startswith("<bounces+")
    # The line to paste, the sink it used, and the command line pointed at the demo.
    assert f"command line: export HEBDO_INSTANCE={instance.resolve()}" in result.stdout
    sink_url = re.search(r"^SMTP sink: +(smtp://127\.0\.0\.1:\d+)", result.stdout, re.M)
    assert sink_url, result.stdout
    assert f"SMTP_URL={sink_url[1]}" in (instance / "env").read_text().splitlines()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HEBDO_INSTANCE")}
    listed = subprocess.run(
        [sys.executable, "-m", "service.cli", "--instance", str(instance), "newsletters", "list"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("intelligence-societe"), listed.stdout


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def _is_worker(pid: int) -> bool:
    try:
        return b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_demo_starts_its_worker_again_when_it_dies(tmp_path: Path) -> None:
    port = free_port()
    instance = tmp_path / "demo"
    out = (tmp_path / "demo.out").open("w+")
    demo = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--port", str(port),
         "--instance", str(instance)],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "serving;" not in (tmp_path / "demo.out").read_text():
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            assert time.monotonic() < deadline, "the demo did not start serving"
            time.sleep(0.5)
        first = [p for p in _children(demo.pid) if _is_worker(p)]
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        while True:
            again = [p for p in _children(demo.pid) if _is_worker(p) and p != first[0]]
            if again:
                break
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            assert time.monotonic() < deadline + 30, "the worker was not started again"
            time.sleep(0.5)
        assert "the worker stopped; starting it again (1/5)" in (tmp_path / "demo.out").read_text()
        assert demo.poll() is None  # the demo keeps serving
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
        out.close()
