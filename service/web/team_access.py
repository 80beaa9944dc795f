"""Doors into an account: inviting an editor, the welcome and reset links, the second
factor on the Account page and at login, and the first admin of an empty site.

The rules are in service.team.access and service.team.totp; these views translate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import math
import threading
import time
from typing import Any

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup
from werkzeug.wrappers import Response

from service.addresses import InvalidAddress
from service.mail import links
from service.mail.notices import Notice
from service.mail.transport import SmtpTransport
from service.models import Editor, EditorRole, utcnow
from service.team import access, editors, totp
from service.team.audit import Who
from service.team.permissions import Permission
from service.text import UnusableText
from service.web import auth
from service.web.deps import current_editor, db, editor_required, requires, settings
from service.web.i18n import _, get_locale, ngettext

blueprint = Blueprint("team_access", __name__)
log = logging.getLogger(__name__)

Page = tuple[str, int]

MAIL_SMTP_TIMEOUT = 10.0  # seconds the person waits for the relay before we give up
SECOND_STEP_SECONDS = 300  # the code must follow the password within five minutes
_PENDING = "pending_login"  # the cookie session's key for a login waiting for its code


@blueprint.context_processor
def _limits() -> dict[str, int]:
    return {
        "min_password_length": editors.MIN_PASSWORD_LENGTH,
        "invite_hours": int(access.INVITE_MAX_AGE.total_seconds() // 3600),
    }


def _network() -> str:
    return editors.client_network(request.remote_addr or "")


def _who(editor: Editor) -> Who:
    return Who.editor(editor, _network())


def _mail(notice: Notice, editor_id: int, *, lang: str, inviter: str = "") -> bool:
    """Mail an invitation or a reset link after the commit; whether the relay took it."""
    config = settings()
    editor = db().get(Editor, editor_id)
    if editor is None or not config.smtp_relays:
        return False
    relays = tuple(
        dataclasses.replace(r, timeout=min(r.timeout, MAIL_SMTP_TIMEOUT))
        for r in config.smtp_relays
    )
    with SmtpTransport(relays) as transport:
        return access.send_message(
            db(), notice, editor, config, transport, lang=lang, inviter=inviter
        )


def _mail_after_answering(response: Response, notice: Notice, editor_id: int, lang: str) -> None:
    """Mail once the answer has left (when the server closes the response), in a thread of
    its own: the answer is as fast whether or not the address has an account, which a
    relay's round trip would otherwise tell. Lost if the process dies meanwhile: the
    person asks again."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def send() -> None:
        try:
            with app.app_context():
                _mail(notice, editor_id, lang=lang)
        except Exception:  # a thread's failure reaches no one else: log it, whatever it is
            log.exception("%s for editor %s not sent", notice.value, editor_id)

    def start() -> None:
        threading.Thread(target=send, name=f"hebdo-{notice.value}", daemon=True).start()

    response.call_on_close(start)


def _password_problem(problem: editors.PasswordProblem) -> str:
    if problem is editors.PasswordProblem.TOO_LONG:
        return _(
            "The new password must have at most {n} characters.", n=editors.MAX_PASSWORD_LENGTH
        )
    return _("The new password must have at least {n} characters.", n=editors.MIN_PASSWORD_LENGTH)


def _new_password() -> tuple[str, str | None]:
    """The new password of a form, and what is wrong with it (None: nothing)."""
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        return new, _("The new passwords do not match.")
    try:
        editors.check_new_password(new)
    except editors.PasswordRefused as refused:
        return new, _password_problem(refused.problem)
    return new, None


# --- invitations ------------------------------------------------------------------------

_ROLES = {"admin": EditorRole.ADMIN, "editor": EditorRole.EDITOR, "viewer": EditorRole.VIEWER}


@blueprint.route("/team/invite", methods=["GET", "POST"])
@requires(Permission.MANAGE)
def invite() -> Page | Response:
    """An admin invites someone: an account without a password, and a link by mail."""
    admin = current_editor()
    assert admin is not None
    if request.method == "GET":
        return render_template("web/team_invite.html", error=None), 200
    role = _ROLES.get(request.form.get("role", ""))
    if role is None:
        return render_template("web/team_invite.html", error=_("Choose a role.")), 400
    try:
        editor = access.invite(
            db(),
            _who(admin),
            request.form.get("email", ""),
            role,
            name=request.form.get("name", ""),
        )
    except InvalidAddress:
        error = _("This email address is not valid.")
        return render_template("web/team_invite.html", error=error), 400
    except UnusableText:
        error = _("The name cannot be used: it is too long or holds control characters.")
        return render_template("web/team_invite.html", error=error), 400
    except access.AlreadyEditor:
        error = _("This address already has an account.")
        return render_template("web/team_invite.html", error=error), 400
    db().commit()
    inviter = admin.name or admin.email
    if _mail(Notice.EDITOR_INVITE, editor.id, lang=get_locale(), inviter=inviter):
        flash(_("Invitation sent to {email}.", email=editor.email), "ok")
    else:
        flash(
            _(
                "The account of {email} is created but the invitation could not be sent: "
                "invite again later.",
                email=editor.email,
            ),
            "error",
        )
    return redirect(url_for("team_access.invite"))


def _set_password_page(editor: Editor, kind: str, error: str | None = None) -> str:
    return render_template("web/set_password.html", editor=editor, kind=kind, error=error)


def _link_error(error: access.LinkInvalid) -> Page:
    expired = isinstance(error, access.LinkExpired)
    return render_template("web/link_dead.html", expired=expired), 410 if expired else 404


@blueprint.route(links.ROUTES["welcome"], methods=["GET", "POST"])
def welcome(token: str) -> Page | Response:
    """The invitee chooses a password (GET only shows the form: link scanners follow GETs)."""
    try:
        editor = access.open_link(db(), settings().secret_key, access.INVITE_PURPOSE, token)
    except access.LinkInvalid as error:
        return _link_error(error)
    if request.method == "GET":
        return render_template(
            "web/set_password.html", editor=editor, kind="welcome", error=None
        ), 200
    new, problem = _new_password()
    if problem is not None:
        page = render_template(
            "web/set_password.html", editor=editor, kind="welcome", error=problem
        )
        return page, 400
    try:
        access.welcome(db(), settings().secret_key, token, new, client_network=_network())
    except access.LinkInvalid as error:
        return _link_error(error)
    db().commit()
    auth.fresh_session()
    flash(_("Your password is set. Log in with it."), "ok")
    return redirect(url_for("auth.login"))


# --- password reset ---------------------------------------------------------------------


@blueprint.route("/reset", methods=["GET", "POST"])
def reset_request() -> Page | Response:
    """Ask for a reset link; the answer is the same whether the address has an account."""
    if request.method == "GET":
        return render_template("web/reset_request.html", sent=False), 200
    result = access.request_reset(
        db(), request.form.get("email", ""), address=request.remote_addr or ""
    )
    db().commit()
    if result.limited:
        return render_template("web/reset_request.html", sent=False, limited=True), 429
    response: Response = make_response(render_template("web/reset_request.html", sent=True))
    if result.editor is not None:
        lang = result.editor.language or get_locale()  # their own choice, else this page's
        _mail_after_answering(response, Notice.EDITOR_RESET, result.editor.id, lang)
    return response


@blueprint.route(links.ROUTES["reset"], methods=["GET", "POST"])
def reset(token: str) -> Page | Response:
    """Choose a new password from a reset link; every session of the account ends."""
    try:
        editor = access.open_link(db(), settings().secret_key, access.RESET_PURPOSE, token)
    except access.LinkInvalid as error:
        return _link_error(error)
    if request.method == "GET":
        return render_template(
            "web/set_password.html", editor=editor, kind="reset", error=None
        ), 200
    new, problem = _new_password()
    if problem is not None:
        page = render_template("web/set_password.html", editor=editor, kind="reset", error=problem)
        return page, 400
    try:
        access.reset_password(db(), settings().secret_key, token, new, client_network=_network())
    except access.LinkInvalid as error:
        return _link_error(error)
    db().commit()
    auth.fresh_session()
    flash(_("Your password is changed and every session is logged out. Log in with it."), "ok")
    return redirect(url_for("auth.login"))


# --- the first admin --------------------------------------------------------------------


def from_loopback() -> bool:
    """Whether the request comes from this machine: the direct peer's address (not a
    forwarded one) is loopback, and so is the client's when a proxy is trusted."""
    original = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
    peers = [original or request.environ.get("REMOTE_ADDR"), request.remote_addr]
    for peer in peers:
        try:
            if not ipaddress.ip_address(str(peer).split("%", 1)[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def setup_page(error: str | None = None) -> str:
    """The form that creates the first admin (also shown by /login on an empty site)."""
    return render_template(
        "web/setup.html",
        remote=False,
        error=error,
        min_password_length=editors.MIN_PASSWORD_LENGTH,
    )


@blueprint.route("/setup", methods=["GET", "POST"])
def setup() -> Page | Response:
    """Create the first admin of an empty site, from this machine only; 404 afterwards."""
    if not access.needs_first_admin(db()):
        abort(404)
    if not from_loopback():
        return render_template("web/setup.html", remote=True, error=None), 403
    if request.method == "GET":
        return setup_page(), 200
    new, problem = _new_password()
    if problem is not None:
        return setup_page(problem), 400
    try:
        editor = access.create_first_admin(
            db(),
            request.form.get("email", ""),
            new,
            name=request.form.get("name", ""),
            client_network=_network(),
        )
    except InvalidAddress:
        return setup_page(_("This email address is not valid.")), 400
    except UnusableText:
        error = _("The name cannot be used: it is too long or holds control characters.")
        return setup_page(error), 400
    except access.AlreadySetUp:
        db().rollback()
        abort(404)
    token = editors.open_session(
        db(), editor, address=request.remote_addr or "", user_agent=request.user_agent.string
    )
    db().commit()
    auth.fresh_session()
    session["sid"] = token
    return redirect(url_for("dashboard.index"))


# --- the second factor at login ---------------------------------------------------------


def _fingerprint(editor: Editor) -> str:
    return hashlib.sha256(editor.password_hash.encode("utf-8")).hexdigest()[:16]


def start_second_step(editor: Editor, next_path: str | None) -> Response:
    """After the right password of an editor with a second factor: ask for a code."""
    auth.fresh_session()
    session[_PENDING] = {
        "id": editor.id,
        "at": int(time.time()),
        "fp": _fingerprint(editor),
        "next": auth.safe_next(next_path),
    }
    return redirect(url_for("team_access.login_code"))


def _pending_editor() -> tuple[Editor, str] | None:
    """The editor whose password was right a moment ago in this browser, and where to go."""
    pending: Any = session.get(_PENDING)
    if not isinstance(pending, dict):
        return None
    at, editor_id = pending.get("at"), pending.get("id")
    if not isinstance(at, int) or not isinstance(editor_id, int) or not 0 < editor_id < 2**31:
        return None
    if time.time() - at > SECOND_STEP_SECONDS:
        return None
    editor = db().get(Editor, editor_id)
    if editor is None or editor.is_disabled or not editor.totp_secret:
        return None
    if pending.get("fp") != _fingerprint(editor):  # the password changed meanwhile
        return None
    return editor, str(pending.get("next") or url_for("dashboard.index"))


@blueprint.route("/login/code", methods=["GET", "POST"])
def login_code() -> Page | Response | tuple[str, int, dict[str, str]]:
    """The second step of a login: a code from the app, or a recovery code."""
    found = _pending_editor()
    if found is None:
        session.pop(_PENDING, None)
        flash(_("Log in again: the code was not asked in time."), "error")
        return redirect(url_for("auth.login"))
    editor, target = found
    if request.method == "GET":
        return render_template("web/login_code.html", error=None), 200
    step, wait = totp.second_step(
        db(), editor, request.form.get("code", ""), address=request.remote_addr or ""
    )
    if step is totp.Step.LOCKED:
        db().commit()
        minutes = math.ceil(wait / 60)
        error = ngettext(
            "Too many failed attempts. Try again in {n} minute.",
            "Too many failed attempts. Try again in {n} minutes.",
            minutes,
        )
        return render_template("web/login_code.html", error=error), 429, {"Retry-After": str(wait)}
    if step is totp.Step.WRONG:
        db().commit()  # the failure is counted
        return render_template("web/login_code.html", error=_("This code is wrong.")), 401
    editor.last_login_at = utcnow()
    token = editors.open_session(
        db(), editor, address=request.remote_addr or "", user_agent=request.user_agent.string
    )
    db().commit()
    auth.fresh_session()
    session["sid"] = token
    if step is totp.Step.RECOVERY:
        left = totp.recovery_left(editor)
        flash(
            ngettext(
                "You used a recovery code: {n} is left.",
                "You used a recovery code: {n} are left.",
                left,
            ),
            "ok",
        )
    return redirect(target)


# --- the second factor on the Account page ----------------------------------------------


def _qr_svg(text: str) -> Markup:
    """`text` as a QR code, an inline SVG drawn on the server (no script, no image request)."""
    code = segno.make(text, error="m")
    return Markup(code.svg_inline(scale=4, border=2, dark="#000", light="#fff"))  # noqa: S704 (segno's own markup)


def _totp_setup_page(secret: str, error: str | None = None) -> str:
    editor = current_editor()
    assert editor is not None
    uri = totp.provisioning_uri(secret, editor.email)
    return render_template(
        "web/totp_setup.html",
        secret=secret,
        uri=uri,
        qr=_qr_svg(uri),
        current_editor_email=editor.email,
        error=error,
    )


def _code_problem(problem: totp.CodeProblem) -> str:
    if problem is totp.CodeProblem.WRONG_PASSWORD:
        return _("The password is wrong.")
    if problem is totp.CodeProblem.LOCKED:
        return _("Too many failed attempts. Try again later.")
    return _("This code is wrong. Check the clock of your phone and type the code it shows now.")


@blueprint.route("/account/two-step", methods=["GET", "POST"])
@editor_required
def totp_on() -> Page | Response:
    """Turn on two-step sign-in: a new secret, confirmed with the password and a code."""
    editor = current_editor()
    assert editor is not None
    if editor.totp_secret:
        return redirect(url_for("auth.account"))
    if request.method == "GET":
        return _totp_setup_page(totp.new_secret()), 200
    secret = request.form.get("secret", "")
    if not totp.is_secret(secret):
        return _totp_setup_page(totp.new_secret(), _("Start again: the form was damaged.")), 400
    try:
        codes = totp.turn_on(
            db(),
            editor,
            _who(editor),
            password=request.form.get("password", ""),
            secret=secret,
            code=request.form.get("code", ""),
            address=request.remote_addr or "",
        )
    except totp.CodeRefused as refused:
        db().commit()  # failures are counted
        return _totp_setup_page(secret, _code_problem(refused.problem)), 400
    db().commit()
    return render_template("web/totp_codes.html", codes=codes), 200


@blueprint.post("/account/two-step/off")
@editor_required
def totp_off() -> Response | Page:
    """Turn two-step sign-in off (the password is asked)."""
    editor = current_editor()
    assert editor is not None
    try:
        totp.turn_off(
            db(),
            editor,
            _who(editor),
            password=request.form.get("password", ""),
            address=request.remote_addr or "",
        )
    except totp.CodeRefused as refused:
        db().commit()
        flash(_code_problem(refused.problem), "error")
        return redirect(url_for("auth.account"))
    db().commit()
    flash(_("Two-step sign-in is off."), "ok")
    return redirect(url_for("auth.account"))
