"""The CLI door: create a newsletter, import readers, load an edition, send it for real."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.support.smtp import RecordingSmtpServer
from tests.support.worker import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cli_creates_imports_loads_and_sends_through_a_worker(
    backend: str, env: dict[str, str], smtp_server: RecordingSmtpServer, tmp_path: Path
) -> None:
    runner = CliRunner(env=env)

    def hebdo(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "created newsletter lettre" in hebdo(
        "newsletters", "create", "--slug", "lettre", "--name", "La Lettre",
        "--sender", "lettre@hebdo.example", "--postal-address", "1 place de la Gare, Lyon",
    )  # fmt: skip
    readers = tmp_path / "readers.csv"
    readers.write_text(
        "email,name\nada@example.org,Ada\nbob@example.org,Bob\nchloe@example.org,Chloé\n",
        encoding="utf-8",
    )
    imported = hebdo(
        "subscribers", "import", str(readers), "--newsletter", "lettre",
        "--confirmed", "--reason", "readers of the paper edition",
    )  # fmt: skip
    assert "3" in imported
    assert "loaded edition 1" in hebdo(
        "editions", "load", str(ROOT / "service/sample/edition_fr.json"), "--newsletter", "lettre"
    )

    with WorkerProcess(env, tmp_path / "worker.log"):
        output = hebdo("send", "1", "--wait", "--timeout", "90")
    assert "delivered 3 messages" in output
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ada@example.org", "bob@example.org", "chloe@example.org",
    ]  # fmt: skip
    chloe = smtp_server.messages_for("chloe@example.org")[0].parsed()
    text_part = chloe.get_body(("plain",))
    assert text_part is not None
    assert "Bonjour Chloé," in text_part.get_content()
