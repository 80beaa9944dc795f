"""The editor's home: newsletters, editions and their send progress."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template
from sqlalchemy import select
from werkzeug.wrappers import Response

from service import deliveries, newsletters
from service.models import Edition
from service.web.deps import db, editor_required

blueprint = Blueprint("dashboard", __name__)


@blueprint.get("/")
@editor_required
def index() -> str:
    """Newsletters and their latest editions."""
    session = db()
    rows = []
    for newsletter in newsletters.list_all(session):
        latest = session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id)
            .order_by(Edition.number.desc())
            .limit(10)
        ).all()
        rows.append((newsletter, [(e, deliveries.progress(session, e.id)) for e in latest]))
    return render_template("web/dashboard.html", rows=rows)


@blueprint.get("/editions/<int:edition_id>")
@editor_required
def edition(edition_id: int) -> str:
    """One edition: status and live progress."""
    found = db().get(Edition, edition_id)
    if found is None:
        abort(404)
    return render_template(
        "web/edition.html", edition=found, progress=deliveries.progress(db(), edition_id)
    )


@blueprint.get("/editions/<int:edition_id>/progress.json")
@editor_required
def edition_progress(edition_id: int) -> Response:
    """Progress counts, polled by the edition page."""
    found = db().get(Edition, edition_id)
    if found is None:
        abort(404)
    p = deliveries.progress(db(), edition_id)
    return jsonify(
        status=found.status.value,
        detail=found.status_detail,
        queued=p.queued,
        sending=p.sending,
        sent=p.sent,
        failed=p.failed,
        cancelled=p.cancelled,
        total=p.total,
    )
