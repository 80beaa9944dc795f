"""The audit log: one row per action that matters, written in the caller's transaction.

Actions (the `action` column) are short dotted names, area first: `login`,
`login.failed`, `edition.schedule`, `edition.send`, `edition.pause`, `edition.resume`,
`edition.cancel`, `subscribers.import`, `subscribers.export`, `subscriber.erase`,
`suppression.add`, `suppression.lift`, `newsletter.settings`, `editor.create`,
`editor.role`, `editor.disable`, `token.create`, `token.revoke`, …
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import AuditEntry, Edition, Editor, utcnow
from service.text import one_line

CLI_ACTOR = "cli"
_MAX_DETAIL = 4000
_AGO = re.compile(r"(\d{1,5})([dh])")


@dataclass(frozen=True)
class Who:
    """Who acts, as the audit log names them: an editor, the command line, an API token."""

    editor_id: int | None
    name: str
    client_network: str = ""

    @classmethod
    def editor(cls, editor: Editor, client_network: str = "") -> Who:
        return cls(editor.id, editor.email, client_network)

    @classmethod
    def cli(cls) -> Who:
        return cls(None, CLI_ACTOR)


def record(
    session: Session,
    who: Who,
    action: str,
    *,
    object_type: str = "",
    object_id: object = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one row to the audit log (flushed, not committed)."""
    text = json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True, default=str)
    entry = AuditEntry(
        editor_id=who.editor_id,
        actor=one_line(who.name.replace("\x00", ""), limit=320),
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:100],
        client_network=who.client_network[:64],
        detail=text[:_MAX_DETAIL],
    )
    session.add(entry)
    session.flush()
    return entry


def edition_action(
    session: Session,
    who: Who | None,
    action: str,
    edition: Edition,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record an action on an edition when someone is named (`who` None: not recorded)."""
    if who is None:
        return
    record(
        session,
        who,
        action,
        object_type="edition",
        object_id=edition.id,
        detail={"newsletter_id": edition.newsletter_id, "number": edition.number, **(detail or {})},
    )


def entries(
    session: Session,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    actions: Sequence[str] = (),
    object_type: str | None = None,
    limit: int = 200,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """The newest entries first, filtered; `before_id` pages further back."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if actions:
        query = query.where(AuditEntry.action.in_(list(actions)))
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query))


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`2026-12-01` (midnight UTC), an ISO time, or `7d` / `12h` ago; ValueError otherwise."""
    text = value.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        hours = int(ago[1]) * (24 if ago[2] == "d" else 1)
        return (now or utcnow()) - timedelta(hours=hours)
    try:
        moment = datetime.fromisoformat(text)
    except OverflowError as exc:
        raise ValueError(str(exc)) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def actions_used(session: Session) -> list[str]:
    """Every action the log holds, for a filter's choices."""
    return list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as JSON-ready data (the CLI's --json, the API)."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "editor_id": entry.editor_id,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "client_network": entry.client_network,
        "detail": json.loads(entry.detail) if entry.detail else {},
    }
