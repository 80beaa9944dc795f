"""Who may do what: the one table of roles, checked by every door before it acts.

- viewer: reads every page and figure, changes nothing (but their own password,
  language, second factor and sessions).
- editor: also composes, tests, schedules, sends, pauses, resumes and cancels, and
  manages readers, for the newsletters they are given (all of them when given none).
- admin: everything, on every newsletter: also editors, newsletters and their settings,
  suppressions, API tokens and webhooks.
"""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Editor, EditorNewsletter, EditorRole


class Permission(enum.Enum):
    READ = "read"  # every page and figure
    COMPOSE = "compose"  # drafts, previews, test sends
    SEND = "send"  # schedule, send, pause, resume, cancel
    AUDIENCE = "audience"  # add, import, edit, export and erase readers
    MANAGE = "manage"  # editors, newsletters, settings, suppressions, tokens, audit log


_GRANTED: dict[EditorRole, frozenset[Permission]] = {
    EditorRole.VIEWER: frozenset({Permission.READ}),
    EditorRole.EDITOR: frozenset(
        {Permission.READ, Permission.COMPOSE, Permission.SEND, Permission.AUDIENCE}
    ),
    EditorRole.ADMIN: frozenset(Permission),
}


def least_role(permission: Permission) -> EditorRole:
    """The least role that has this permission (what a refusal says is needed)."""
    for role in (EditorRole.VIEWER, EditorRole.EDITOR, EditorRole.ADMIN):
        if permission in _GRANTED[role]:
            return role
    raise AssertionError(permission)  # pragma: no cover - the admin has every permission


class NotAllowed(PermissionError):
    """The editor's role (or their newsletters) does not allow this."""

    def __init__(self, editor: Editor, permission: Permission, newsletter_id: int | None) -> None:
        self.permission = permission
        self.newsletter_id = newsletter_id
        where = f" on newsletter {newsletter_id}" if newsletter_id is not None else ""
        super().__init__(f"{editor.email} ({editor.role.value}) may not {permission.value}{where}")


def newsletters_of(session: Session, editor: Editor) -> set[int] | None:
    """The newsletters an editor acts on, or None for every newsletter."""
    if editor.role is EditorRole.ADMIN:
        return None
    given = set(
        session.scalars(
            select(EditorNewsletter.newsletter_id).where(EditorNewsletter.editor_id == editor.id)
        )
    )
    return given or None


def can(
    session: Session,
    editor: Editor,
    permission: Permission,
    newsletter_id: int | None = None,
) -> bool:
    """Whether the editor may do this (to this newsletter, when one is named)."""
    if editor.is_disabled or permission not in _GRANTED[editor.role]:
        return False
    if newsletter_id is None or permission is Permission.READ:
        return True
    allowed = newsletters_of(session, editor)
    return allowed is None or newsletter_id in allowed


def authorize(
    session: Session,
    editor: Editor,
    permission: Permission,
    newsletter_id: int | None = None,
) -> None:
    """Raise NotAllowed unless the editor may do this."""
    if not can(session, editor, permission, newsletter_id):
        raise NotAllowed(editor, permission, newsletter_id)
