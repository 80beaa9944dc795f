"""The Outbox: mail the embedded SMTP sink received, browsable by editors."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flask import Blueprint, Response, abort, render_template
from werkzeug.exceptions import NotFound

from service.team.permissions import Permission
from service.tools.sink import maildir_files
from service.web.deps import requires, settings

blueprint = Blueprint("outbox", __name__, url_prefix="/outbox")


def parse_message(path: Path, *, headers_only: bool = False) -> EmailMessage:
    """Parse a stored message (only its headers, for listings)."""
    with path.open("rb") as stream:
        return BytesParser(policy=policy.default).parse(stream, headersonly=headers_only)


def _maildir() -> Path:
    path = settings().maildir_path
    if path is None:
        abort(404)
    return path


def _message(key: str) -> EmailMessage:
    for path in maildir_files(_maildir()):
        if path.name == key:
            return parse_message(path)
    raise NotFound()


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """The newest messages first."""
    files = list(reversed(maildir_files(_maildir())))
    messages = [(path.name, parse_message(path, headers_only=True)) for path in files[:200]]
    return render_template("web/outbox.html", messages=messages, total=len(files))


@blueprint.get("/<key>")
@requires(Permission.READ)
def message(key: str) -> str:
    """One message: headers, the HTML part in a sandboxed frame, the text part."""
    msg = _message(key)
    text = msg.get_body(preferencelist=("plain",))
    return render_template(
        "web/outbox_message.html",
        key=key,
        msg=msg,
        text=text.get_content() if text else "",
    )


@blueprint.get("/<key>/html")
@requires(Permission.READ)
def message_html(key: str) -> Response:
    """The HTML part alone, served under a sandboxing CSP."""
    part = _message(key).get_body(preferencelist=("html",))
    if part is None:
        abort(404)
    response = Response(part.get_content(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = "sandbox allow-popups; img-src * data:"
    return response


@blueprint.get("/<key>/raw")
@requires(Permission.READ)
def message_raw(key: str) -> Response:
    """The message exactly as the sink stored it."""
    for path in maildir_files(_maildir()):
        if path.name == key:
            return Response(path.read_bytes(), mimetype="text/plain")
    raise NotFound()
