"""The HTML part of a sent edition is valid HTML by the Nu Html Checker (vnu.jar).

The checker is the npm package vnu-jar, pinned in tools/vnu/package-lock.json and
installed by `make install` (npm ci); it runs on Java. Allowed are only the email
idioms the checker cannot know: Outlook's mso-* CSS and VML namespaces, the
presentational attributes Outlook and old clients still need (bgcolor, width,
cellpadding…), and Apple Mail's supported-color-schemes hint. Without java or the jar
the test fails: a validator that silently does not run vouches for nothing.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import Edition
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

ROOT = Path(__file__).resolve().parents[2]
VNU_JAR = ROOT / "tools" / "vnu" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"

ALLOWED = [
    re.compile(pattern)
    for pattern in (
        # Outlook (Word's renderer): table spacing, padding and hiding.
        r"CSS: “mso-[a-z-]+”: Property “mso-[a-z-]+” doesn't exist\.",
        # Outlook's VML, for the rounded buttons and backgrounds Word cannot draw.
        r"Attribute “xmlns:[vo]” not allowed here\.",
        # Apple Mail's dark-mode hint beside the standard color-scheme.
        r"CSS: “supported-color-schemes”: Property “supported-color-schemes” doesn't exist\.",
        # Presentational attributes: Outlook ignores the CSS they duplicate.
        r"The “(bgcolor|width|height|cellpadding|cellspacing|border|align|valign)” attribute"
        r" on the “(table|td|th|body)” element is obsolete\. .*",
    )
]


def _java() -> str:
    java = shutil.which("java")
    if java is None or not VNU_JAR.is_file():
        pytest.fail(
            f"the Nu Html Checker cannot run: java {'found' if java else 'missing'}, "
            f"{VNU_JAR} {'found' if VNU_JAR.is_file() else 'missing'}; "
            "install Java 17+ and run `make install` (npm ci in tools/vnu)"
        )
    return java


def _check(files: list[Path]) -> dict[str, list[dict[str, str]]]:
    """vnu's messages for each file, by file name."""
    result = subprocess.run(
        [_java(), "-jar", str(VNU_JAR), "--format", "json", "--exit-zero-always"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stderr)
    found: dict[str, list[dict[str, str]]] = {f.name: [] for f in files}
    for message in report["messages"]:
        found[message["url"].rsplit("/", 1)[-1]].append(message)
    return found


def _disallowed(messages: list[dict[str, str]]) -> list[str]:
    return [
        f"{m['type']}{'/' + m['subType'] if 'subType' in m else ''} line {m.get('lastLine')}:"
        f" {m['message']}"
        for m in messages
        if not any(pattern.fullmatch(m["message"]) for pattern in ALLOWED)
    ]


def _html_part(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_the_sent_editions_html_is_valid_but_for_the_email_idioms(
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    with sessions() as session, session.begin():
        for language in ("fr", "en"):
            letter = factories.newsletter(session, slug=f"lettre-{language}", language=language)
            factories.legacy_reader(
                session, letter, f"{language}@example.org", 'Zoë "<b>&amp;</b>" Brontë'
            )
            edition = factories.edition(session, letter, language=language)
            factories.begin_sending(session, settings, edition, batch_size=10)
        editions = [edition.id for edition in session.scalars(select(Edition))]
    for edition_id in editions:
        assert loop.send_pending(sessions, settings, edition_id).sent == 1

    files = []
    for message in smtp_server.wait_for(2):
        path = tmp_path / f"{message.rcpt_tos[0].split('@')[0]}.html"
        path.write_text(_html_part(message.data), encoding="utf-8")
        files.append(path)
    # The control: the two errors the edition had, put back, are found.
    broken = tmp_path / "broken.html"
    broken.write_text(
        files[0]
        .read_text(encoding="utf-8")
        .replace("<body ", '<body width="100%" ', 1)
        .replace("<head>", '<head><meta name="x-apple-disable-message-reformatting">', 1),
        encoding="utf-8",
    )

    found = _check([*files, broken])

    for path in files:
        assert _disallowed(found[path.name]) == [], path.name
        assert found[path.name], "vnu said nothing at all: the allow-list was not exercised"
    assert len(_disallowed(found[broken.name])) == 2
