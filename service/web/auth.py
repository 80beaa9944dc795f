"""Editor login and logout."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from service import editors
from service.web.deps import db
from service.web.i18n import _

blueprint = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """A local path to go back to; anything else (//host, http://…) goes home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.index")
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    """Log an editor in."""
    error = None
    if request.method == "POST":
        editor = editors.authenticate(
            db(), request.form.get("email", ""), request.form.get("password", "")
        )
        if editor is not None:
            db().commit()
            _fresh_session()
            session["editor_id"] = editor.id
            return redirect(safe_next(request.args.get("next")))
        error = _("Unknown address or wrong password.")
    return render_template("web/login.html", error=error), 401 if error else 200  # type: ignore[return-value]


@blueprint.post("/logout")
def logout() -> Response:
    """Log out."""
    _fresh_session()
    return redirect(url_for("auth.login"))


def _fresh_session() -> None:
    # A new session at each login and logout; only the language chosen on the page stays.
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
