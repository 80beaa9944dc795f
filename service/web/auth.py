"""Editor login and logout, and the Account page (password, sessions)."""

from __future__ import annotations

import math
import re
from urllib.parse import unquote

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from service.team import access, audit, editors
from service.web import team_access
from service.web.deps import current_editor, db, editor_required
from service.web.i18n import _, ngettext

blueprint = Blueprint("auth", __name__)

# A path on this site and its query, in plain ASCII URL characters. Anything else
# (a scheme, //host, a backslash, a control character a browser would drop,
# a character outside ASCII) is refused rather than cleaned.
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")


def safe_next(target: str | None) -> str:
    """A same-site path to go back to after login; anything else goes home."""
    home = url_for("dashboard.index")
    if not target or not _LOCAL_PATH.fullmatch(target):
        return home
    # Once more after one decoding, for whatever decodes `%2F%2Fhost` on the way.
    decoded = unquote(target)
    if decoded.startswith("//") or "\\" in decoded or any(c < " " or c == "\x7f" for c in decoded):
        return home
    return target


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int, dict[str, str]]:
    """Log an editor in; too many failures get a 429 with the wait, whatever the password."""
    if request.method == "GET":
        if access.needs_first_admin(db()):
            if team_access.from_loopback():
                # The first admin's form, in place (it posts to /setup).
                return team_access.setup_page(), 200, {}
            return render_template("web/login.html", no_editor=True), 200, {}
        return render_template("web/login.html"), 200, {}
    typed = request.form.get("email", "")
    address = request.remote_addr or ""
    result = editors.log_in(
        db(),
        typed,
        request.form.get("password", ""),
        address=address,
        user_agent=request.user_agent.string,
    )
    network = editors.client_network(address)
    if result.second_factor:
        pass  # the second step (team_access.login_code) writes the login's row
    elif result.editor is not None:
        audit.record(db(), audit.Who.editor(result.editor, network), "login")
    else:
        # The actor is the address typed (it may name no account); never the password.
        detail = {"throttled": True} if result.retry_after else {}
        audit.record(db(), audit.Who(None, typed, network), "login.failed", detail=detail)
    db().commit()
    if result.retry_after:
        minutes = math.ceil(result.retry_after / 60)
        error = ngettext(
            "Too many failed attempts. Try again in {n} minute.",
            "Too many failed attempts. Try again in {n} minutes.",
            minutes,
        )
        page = render_template("web/login.html", error=error)
        return page, 429, {"Retry-After": str(result.retry_after)}
    if result.second_factor and result.editor is not None:
        return team_access.start_second_step(result.editor, request.args.get("next"))
    if result.token:
        fresh_session()
        session["sid"] = result.token
        return redirect(safe_next(request.args.get("next")))
    page = render_template("web/login.html", error=_("Unknown address or wrong password."))
    return page, 401, {}


@blueprint.post("/logout")
def logout() -> Response:
    """Log out: the session ends on the server too, so a saved cookie opens nothing."""
    editors.log_out(db(), session.get("sid"))
    db().commit()
    fresh_session()
    return redirect(url_for("auth.login"))


@blueprint.get("/account/")
@editor_required
def account() -> str:
    """The editor's password and live sessions."""
    return _account_page()


@blueprint.post("/account/password")
@editor_required
def change_password() -> Response | tuple[str, int]:
    """Change the password; every other session of this editor ends."""
    editor = current_editor()
    assert editor is not None
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        return _account_page(_("The new passwords do not match.")), 400
    try:
        editors.change_password(
            db(), editor, request.form.get("current_password", ""), new, keep=session.get("sid")
        )
    except editors.PasswordRefused as refused:
        db().commit()  # a wrong current password counts as a failed login
        return _account_page(_password_problem(refused.problem)), 400
    db().commit()
    flash(_("Password changed. Every other session is logged out."), "ok")
    return redirect(url_for("auth.account"))


@blueprint.post("/account/logout-everywhere")
@editor_required
def logout_everywhere() -> Response:
    """End every session of this editor, this one included."""
    editor = current_editor()
    assert editor is not None
    editors.log_out_everywhere(db(), editor)
    db().commit()
    fresh_session()
    return redirect(url_for("auth.login"))


def _account_page(error: str | None = None) -> str:
    editor = current_editor()
    assert editor is not None
    token = session.get("sid", "")
    rows = [
        (record, editors.is_current(record, token)) for record in editors.sessions_of(db(), editor)
    ]
    return render_template(
        "web/account.html",
        editor=editor,
        rows=rows,
        error=error,
        min_length=editors.MIN_PASSWORD_LENGTH,
        recovery_left=len(editor.totp_recovery.split()),
    )


def _password_problem(problem: editors.PasswordProblem) -> str:
    if problem is editors.PasswordProblem.WRONG_CURRENT:
        return _("The current password is wrong.")
    if problem is editors.PasswordProblem.LOCKED:
        return _("Too many failed attempts. Try again later.")
    if problem is editors.PasswordProblem.TOO_LONG:
        return _(
            "The new password must have at most {n} characters.", n=editors.MAX_PASSWORD_LENGTH
        )
    return _("The new password must have at least {n} characters.", n=editors.MIN_PASSWORD_LENGTH)


def fresh_session() -> None:
    # A new cookie session (and so a new CSRF token) at each login and logout;
    # only the language chosen on the page stays.
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
