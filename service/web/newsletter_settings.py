"""A newsletter's settings page: everyone reads it, admins change it."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service import newsletters
from service.models import Editor, Newsletter
from service.team import audit, editors, permissions
from service.team.permissions import Permission
from service.web.deps import current_editor, db, newsletter_slug, requires
from service.web.i18n import _, marked

blueprint = Blueprint("newsletter_settings", __name__)


def _newsletter(slug: str) -> Newsletter:
    try:
        return newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        abort(404)


def _editor() -> Editor:
    editor = current_editor()
    assert editor is not None  # requires() ran first
    return editor


def _page(newsletter: Newsletter, values: dict[str, object], problems: dict[str, str]) -> str:
    may_change = permissions.can(db(), _editor(), Permission.MANAGE, newsletter.id)
    return render_template(
        "web/settings/newsletter.html",
        newsletter=newsletter,
        values=values,
        problems={field: marked(reason) for field, reason in problems.items()},
        may_change=may_change,
        weekdays=newsletters.WEEKDAYS,
        time_zones=sorted(newsletters.time_zones()),
    )


@blueprint.get("/newsletters/<slug>/settings")
@requires(Permission.READ)
def show(slug: str) -> str:
    """The settings form (read-only for editors and viewers)."""
    newsletter = _newsletter(slug)
    return _page(newsletter, newsletters.settings_of(newsletter), {})


@blueprint.post("/newsletters/<slug>/settings")
@requires(Permission.MANAGE, newsletter_slug())
def save(slug: str) -> Response | tuple[str, int]:
    """Check every field; save all of them or none, and say which are wrong."""
    newsletter = _newsletter(slug)
    editor = _editor()
    form = request.form
    changes: dict[str, object] = {
        field: form.get(field, "") for field in newsletters.SETTINGS_FIELDS if field != "tracking"
    }
    changes["tracking"] = form.get("tracking") == "on"
    who = audit.Who.editor(editor, editors.client_network(request.remote_addr or ""))
    problems = newsletters.update_settings(db(), newsletter, changes, who)
    if problems:
        db().rollback()
        values = {**newsletters.settings_of(newsletter), **changes}
        return _page(newsletter, values, problems), 422
    db().commit()
    flash(_("Settings saved."), "ok")
    return redirect(url_for("newsletter_settings.show", slug=newsletter.slug))
