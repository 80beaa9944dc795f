"""The fault table: fixtures of the fault tests, and the one table `make faults` prints.

Every test here is marked `faults` (kept out of the default run by pyproject's addopts)
and appends its row to test-artifacts/faults.jsonl; the terminal summary prints the
rows as one table, and the run fails if any row lost a reader or sent a copy under
another Message-ID.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import TABLE_PATH
from tests.faults.relay import FaultyRelay

# Short leases, batches and retry delays: a crashed worker's rows, and a message the
# relay refused for now, come back in seconds, not minutes.
FAULT_ENV = {"HEBDO_LEASE_SECONDS": "5", "HEBDO_BATCH_SIZE": "20", "HEBDO_RETRY_BASE_SECONDS": "4"}

_COLUMNS = (
    ("fault", "fault"),
    ("stack", "stack"),
    ("readers", "readers"),
    ("delivered", "delivered"),
    ("duplicates_same_id", "dup. same Message-ID"),
    ("duplicates_other_id", "dup. other Message-ID"),
    ("lost", "lost"),
    ("recover_seconds", "s to recover"),
)


def pytest_configure(config: pytest.Config) -> None:
    # Each run prints its own rows only (xdist's workers append to the controller's file).
    if not hasattr(config, "workerinput"):
        TABLE_PATH.unlink(missing_ok=True)


@pytest.fixture
def smtp_server() -> Iterator[FaultyRelay]:
    """The relay of the fault tests: records what it accepts, misbehaves on demand."""
    with FaultyRelay() as relay:
        yield relay


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The test instance's environment with the fault tests' short leases."""
    return {**env, **FAULT_ENV}


# The table's order: the list of faults, whatever order xdist ran them in.
_ORDER = ("worker", "all workers", "beat", "Redis", "broker", "PostgreSQL", "relay", "STARTTLS",
          "disk", "import")  # fmt: skip


def _place(row: dict[str, Any]) -> tuple[int, str, str]:
    fault, stack = str(row["fault"]), str(row["stack"])
    first = [n for n, prefix in enumerate(_ORDER) if fault.startswith(prefix)]
    return (first[-1] if first else len(_ORDER), fault, stack)


def _rows() -> list[dict[str, Any]]:
    if not TABLE_PATH.exists():
        return []
    rows = [json.loads(line) for line in TABLE_PATH.read_text("utf-8").splitlines() if line]
    return sorted(rows, key=_place)


def table_text(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (the README carries the latest one)."""
    cells = [[title for _key, title in _COLUMNS]]
    for row in rows:
        line = []
        for key, _title in _COLUMNS:
            value = row[key]
            if key == "recover_seconds":
                value = "-" if value is None else f"{value:.0f}"
            line.append(str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    out = []
    for n, line in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {row['fault']} ({row['stack']}): {row['note']}" for row in rows if row["note"]]
    return "\n".join(out + (["", *notes] if notes else []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = _rows()
    if not rows:
        return
    terminalreporter.section("fault table")
    terminalreporter.write_line(table_text(rows))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    broken = [r for r in _rows() if r["lost"] or r["duplicates_other_id"]]
    if broken and session.exitstatus == 0:
        session.exitstatus = 1
