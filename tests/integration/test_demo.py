"""README's first command: `hebdo demo --once` sends the sample edition for real."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
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
