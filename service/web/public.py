"""Public reader links: unsubscribe (RFC 8058), open pixel, clicks, feedback.

Every URL carries a signed delivery token; a forged or tampered one gets a 404
and changes nothing. None of these endpoints needs a cookie or a login.
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, redirect, render_template, request

from service import tokens, tracking
from service.app import csrf
from service.mail.mime import DELIVERY_PURPOSE
from service.web import i18n
from service.web.deps import db, settings

blueprint = Blueprint("public", __name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _delivery_id(token: str) -> int:
    try:
        (delivery_id,) = tokens.verify(settings().secret_key, DELIVERY_PURPOSE, token, 1)
    except tokens.BadToken:
        abort(404)
    return delivery_id


@blueprint.get("/u/<token>")
def unsubscribe_page(token: str) -> str:
    """Show a one-button page; GET never unsubscribes (link scanners follow GETs)."""
    delivery_id = _delivery_id(token)
    try:
        ref = tracking.lookup(db(), delivery_id)
    except tracking.UnknownDelivery:
        abort(404)
    i18n.use_newsletter_locale(db(), ref.newsletter_id)
    return render_template("web/unsubscribe.html", token=token, ref=ref, done=False)


@blueprint.post("/u/<token>")
@csrf.exempt  # RFC 8058: mail clients POST with no cookie; the signed token authorises
def unsubscribe(token: str) -> tuple[str, int]:
    """One-click unsubscribe: effective at once, no confirmation step."""
    delivery_id = _delivery_id(token)
    session = db()
    try:
        reason = (request.form.get("reason") or "").strip()[:500] or None
        i18n.use_newsletter_locale(session, tracking.lookup(session, delivery_id).newsletter_id)
        tracking.unsubscribe(session, delivery_id, reason=reason)
        session.commit()
    except tracking.UnknownDelivery:
        abort(404)
    return render_template("web/unsubscribe.html", token=token, ref=None, done=True), 200


@blueprint.get("/o/<token>.gif")
def open_pixel(token: str) -> Response:
    """Record an open and answer with a transparent GIF."""
    try:
        (delivery_id,) = tokens.verify(settings().secret_key, DELIVERY_PURPOSE, token, 1)
        session = db()
        tracking.record_open(session, delivery_id)
        session.commit()
    except (tokens.BadToken, tracking.UnknownDelivery):
        pass  # a pixel never errors: the reader's mail client shows nothing either way
    response = Response(PIXEL, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store, max-age=0"
    return response


@blueprint.get("/c/<token>/<int:index>")
def click(token: str, index: int) -> Response:
    """Record a click and redirect to the link stored with the edition."""
    delivery_id = _delivery_id(token)
    session = db()
    try:
        target = tracking.record_click(session, delivery_id, index)
        session.commit()
    except tracking.UnknownDelivery:
        abort(404)
    return redirect(target, code=302)  # type: ignore[return-value]


@blueprint.get("/f/<token>/<any(yes, no):answer>")
def feedback(token: str, answer: str) -> str:
    """Record "did you like this edition?" and thank the reader."""
    delivery_id = _delivery_id(token)
    session = db()
    try:
        i18n.use_newsletter_locale(session, tracking.lookup(session, delivery_id).newsletter_id)
        tracking.record_feedback(session, delivery_id, liked=answer == "yes")
        session.commit()
    except tracking.UnknownDelivery:
        abort(404)
    return render_template("web/feedback.html", liked=answer == "yes")
