"""The API access page: tokens (create, revoke, last use) and the outgoing webhooks' deliveries.

Everyone logged in sees it; creating and revoking a token needs the MANAGE permission
(admins). A new token is shown once, in the answer to the form, never in a cookie.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service import newsletters
from service.access import tokens, webhooks
from service.models import Editor
from service.team.permissions import Permission, can
from service.web.deps import current_editor, db, requires, who
from service.web.i18n import _

blueprint = Blueprint("access", __name__, url_prefix="/api-access")


def _editor() -> Editor:
    editor = current_editor()
    assert editor is not None  # requires() ran first
    return editor


def _page(status: int = 200, **extra: Any) -> tuple[str, int]:
    session = db()
    editor = _editor()
    return (
        render_template(
            "web/access.html",
            tokens=tokens.list_all(session),
            endpoints=webhooks.endpoints(session),
            deliveries=webhooks.deliveries(session, limit=50),
            letters=newsletters.list_all(session),
            scopes=[scope.value for scope in tokens.Scope],
            may_manage=can(session, editor, Permission.MANAGE),
            **extra,
        ),
        status,
    )


@blueprint.get("/")
@requires(Permission.READ)
def index() -> tuple[str, int]:
    """Tokens with their scopes and last use; webhooks and their recent attempts."""
    return _page()


@blueprint.post("/tokens")
@requires(Permission.MANAGE)
def create_token() -> tuple[str, int]:
    """Create a token and show it once."""
    session = db()
    form = request.form
    try:
        chosen = tokens.parse_scopes(form.getlist("scope"))
        slug = form.get("newsletter", "")
        letter = newsletters.get_by_slug(session, slug) if slug else None
        created = tokens.create(
            session, form.get("name", ""), chosen, newsletter=letter, actor=who()
        )
    except (tokens.BadTokenRequest, newsletters.UnknownNewsletter) as exc:
        session.rollback()
        return _page(400, error=str(exc))
    session.commit()
    return _page(201, secret=created.secret, created=created.token)


@blueprint.post("/tokens/<int:token_id>/revoke")
@requires(Permission.MANAGE)
def revoke_token(token_id: int) -> Response:
    """Revoke a token for good."""
    session = db()
    try:
        token = tokens.revoke(session, token_id, actor=who())
    except tokens.UnknownToken:
        abort(404)
    session.commit()
    flash(_("Token “{name}” revoked.", name=token.name), "ok")
    return redirect(url_for("access.index"))
