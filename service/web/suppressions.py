"""The suppression list's pages: everyone searches and exports it, admins add and lift."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from service import newsletters
from service.audience import suppressions
from service.models import Editor, Suppression, utcnow
from service.numbers import BadNumber, parse_int
from service.team import audit, editors, permissions
from service.team.permissions import Permission
from service.web.deps import current_editor, db, requires
from service.web.i18n import _

blueprint = Blueprint("suppressions", __name__, url_prefix="/suppressions")


def _editor() -> Editor:
    editor = current_editor()
    assert editor is not None  # requires() ran first
    return editor


def _who(editor: Editor) -> audit.Who:
    return audit.Who.editor(editor, editors.client_network(request.remote_addr or ""))


def _query() -> str:
    return request.args.get("q", "")[:320]


def _page_number() -> int:
    try:
        return parse_int(request.args.get("page", "1"), minimum=1, maximum=1_000_000)
    except BadNumber:
        return 1


def _list_page(form: dict[str, str] | None = None, problems: dict[str, str] | None = None) -> str:
    query = _query()
    found = suppressions.search(db(), query, page=_page_number())
    return render_template(
        "web/suppressions/index.html",
        query=query,
        found=found,
        may_change=permissions.can(db(), _editor(), Permission.MANAGE),
        newsletters=newsletters.list_all(db()),
        form=form or {},
        problems=problems or {},
    )


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """Search the list, a page at a time."""
    return _list_page()


@blueprint.get("/export.csv")
@requires(Permission.READ)
def export_csv() -> BaseResponse:
    """The matching entries as CSV (audited as an export)."""
    query = _query()
    body = "\ufeff" + "".join(suppressions.export_csv(db(), query))
    audit.record(
        db(),
        _who(_editor()),
        "suppressions.export",
        object_type="suppression",
        detail={"search": query},
    )
    db().commit()
    response = Response(body, mimetype="text/csv")
    name = f"suppressions-{utcnow():%Y%m%d}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/add")
@requires(Permission.MANAGE)
def add() -> BaseResponse | tuple[str, int]:
    """Suppress an address or a whole @domain, with a reason."""
    editor = _editor()
    form = {key: request.form.get(key, "") for key in ("target", "reason", "newsletter")}
    problems: dict[str, str] = {}
    newsletter_id = None
    if form["newsletter"]:
        try:
            newsletter_id = newsletters.get_by_slug(db(), form["newsletter"]).id
        except newsletters.UnknownNewsletter:
            problems["newsletter"] = _("Choose a newsletter from the list.")
    if not form["reason"].strip():
        problems["reason"] = _("Give a reason: it is kept in the audit log.")
    if not problems:
        try:
            entry = suppressions.add(
                db(), form["target"], form["reason"], _who(editor), newsletter_id=newsletter_id
            )
        except suppressions.AlreadySuppressed:
            db().rollback()
            problems["target"] = _("This address or domain is already on the list.")
        except suppressions.BadSuppression:
            db().rollback()
            problems["target"] = _(
                "Give an address (name@example.com) or a whole domain (@example.com)."
            )
        else:
            db().commit()
            flash(_("{email} is suppressed.", email=entry.email), "ok")
            return redirect(url_for("suppressions.index"))
    return _list_page(form, problems), 422


def _entry(suppression_id: int) -> Suppression:
    entry = db().get(Suppression, suppression_id)
    if entry is None:
        abort(404)
    return entry


@blueprint.get("/<int:suppression_id>/lift")
@requires(Permission.READ)
def lift_form(suppression_id: int) -> str:
    """Ask for the reason before lifting an entry."""
    return render_template(
        "web/suppressions/lift.html",
        entry=_entry(suppression_id),
        may_change=permissions.can(db(), _editor(), Permission.MANAGE),
        problem="",
    )


@blueprint.post("/<int:suppression_id>/lift")
@requires(Permission.MANAGE)
def lift(suppression_id: int) -> BaseResponse | tuple[str, int]:
    """Take an entry off the list, with a reason."""
    editor = _editor()
    entry = _entry(suppression_id)
    reason = request.form.get("reason", "")
    problem = ""
    if not reason.strip():
        problem = _("Give a reason: it is kept in the audit log.")
    else:
        try:
            email = suppressions.lift(db(), suppression_id, reason, _who(editor))
        except suppressions.BadSuppression:
            db().rollback()
            problem = _("This entry cannot be lifted: it is all that is left of an erased reader.")
        else:
            db().commit()
            flash(_("{email} is no longer suppressed.", email=email), "ok")
            return redirect(url_for("suppressions.index"))
    page = render_template(
        "web/suppressions/lift.html", entry=entry, may_change=True, problem=problem
    )
    return page, 422
