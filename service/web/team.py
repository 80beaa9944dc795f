"""The admin's pages: the team (roles, newsletters, disabled accounts) and the audit log.

Every view needs MANAGE; every change goes through service.team.accounts, which writes
its audit row.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service import newsletters
from service.models import Editor
from service.numbers import int_or_none
from service.team import accounts, audit
from service.team.permissions import Permission
from service.web.deps import current_editor, db, requires, who
from service.web.i18n import _, role_label

blueprint = Blueprint("team", __name__)
AUDIT_PAGE = 50


@blueprint.get("/team/")
@requires(Permission.MANAGE)
def index() -> str:
    """Every editor: address, role, newsletters, last login, disabled; and the forms."""
    return render_template(
        "web/team.html",
        rows=accounts.list_all(db()),
        letters=newsletters.list_all(db()),
        me=current_editor(),
    )


def _editor(editor_id: int) -> Editor:
    found = db().get(Editor, editor_id)
    if found is None:
        abort(404)
    return found


def _done(message: str) -> Response:
    db().commit()
    flash(message, "ok")
    return redirect(url_for(".index"))


def _refused(error: accounts.AccountError) -> Response:
    db().rollback()
    flash(str(error), "error")
    return redirect(url_for(".index"))


@blueprint.post("/team/<int:editor_id>/role")
@requires(Permission.MANAGE)
def set_role(editor_id: int) -> Response:
    """Give the editor another role."""
    editor = _editor(editor_id)
    try:
        role = accounts.role_named(request.form.get("role", ""))
        accounts.set_role(db(), editor, role, who=who())
    except accounts.AccountError as error:
        return _refused(error)
    return _done(_("{email} is now {role}.", email=editor.email, role=role_label(role.value)))


@blueprint.post("/team/<int:editor_id>/newsletters")
@requires(Permission.MANAGE)
def give_newsletters(editor_id: int) -> Response:
    """Give the editor exactly the newsletters ticked (none: every newsletter)."""
    editor = _editor(editor_id)
    try:
        accounts.give_newsletters(db(), editor, request.form.getlist("newsletter"), who=who())
    except accounts.AccountError as error:
        return _refused(error)
    return _done(_("Newsletters of {email} saved.", email=editor.email))


@blueprint.post("/team/<int:editor_id>/disable")
@requires(Permission.MANAGE)
def disable(editor_id: int) -> Response:
    """Disable the account: its sessions end now and it cannot log in."""
    editor = _editor(editor_id)
    me = current_editor()
    if me is not None and me.id == editor.id:
        flash(_("You cannot disable your own account: ask another admin."), "error")
        return redirect(url_for(".index"))
    try:
        accounts.disable(db(), editor, who=who())
    except accounts.AccountError as error:
        return _refused(error)
    return _done(_("{email} is disabled and logged out.", email=editor.email))


@blueprint.post("/team/<int:editor_id>/enable")
@requires(Permission.MANAGE)
def enable(editor_id: int) -> Response:
    """Let a disabled editor log in again."""
    editor = _editor(editor_id)
    accounts.enable(db(), editor, who=who())
    return _done(_("{email} can log in again.", email=editor.email))


@blueprint.get("/audit/")
@requires(Permission.MANAGE)
def audit_log() -> str:
    """The audit log, newest first, filtered by actor, action and date, a page at a time."""
    actor = request.args.get("actor", "").strip()[:320]
    action = request.args.get("action", "").strip()[:40]
    since_text = request.args.get("since", "").strip()[:40]
    error = None
    since = None
    if since_text:
        try:
            since = audit.parse_since(since_text)
        except ValueError:
            error = _("Give the date as 2026-12-01.")
    before = int_or_none(request.args.get("before"))
    rows = audit.entries(
        db(),
        since=since,
        actor=actor or None,
        actions=[action] if action else (),
        limit=AUDIT_PAGE + 1,
        before_id=before if before is not None and before > 0 else None,
    )
    more = len(rows) > AUDIT_PAGE
    rows = rows[:AUDIT_PAGE]
    params: dict[str, Any] = {
        k: v for k, v in (("actor", actor), ("action", action), ("since", since_text)) if v
    }
    return render_template(
        "web/audit.html",
        rows=[audit.as_dict(row) | {"when": row.at} for row in rows],
        actions=audit.actions_used(db()),
        actor=actor,
        action=action,
        since=since_text,
        error=error,
        older=url_for(".audit_log", before=rows[-1].id, **params) if more else None,
        newest=url_for(".audit_log", **params) if before is not None else None,
    )
