"""Public reader links: unsubscribe (RFC 8058), open pixel, clicks, feedback.

Every URL carries a signed delivery token of its own purpose (service.mail.mime):
an open token only records an open, a click token only a click, and so on. A
forged or tampered token, or one of another purpose, gets a 404 and changes
nothing. Mail sent before purposes were split carries the legacy delivery token,
which every endpoint here still takes. None of them needs a cookie or a login.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request

from service import tokens
from service.db import read_only
from service.mail import links
from service.mail.mime import (
    CLICK_PURPOSE,
    DELIVERY_PURPOSE,
    FEEDBACK_PURPOSE,
    UNSUBSCRIBE_PURPOSE,
)
from service.models import EventKind
from service.tracking import events
from service.web import beacon, i18n
from service.web.deps import close_db, db, event_buffer, settings
from service.web.extensions import csrf

blueprint = Blueprint("public", __name__)


def _seen() -> events.Seen:
    """What this request says about who sent it (the domain keeps only the network)."""
    return events.Seen(
        method=request.method,
        user_agent=request.headers.get("User-Agent", ""),
        address=request.remote_addr,
    )


def _delivery_id(token: str, purpose: str) -> int:
    try:
        (delivery_id,) = tokens.verify_any(
            settings().secret_key, (purpose, DELIVERY_PURPOSE), token, 1
        )
    except tokens.BadToken:
        abort(404)
    return delivery_id


@blueprint.get(links.ROUTES["unsubscribe"])
def unsubscribe_page(token: str) -> str:
    """Show a one-button page; GET never unsubscribes (link scanners follow GETs)."""
    delivery_id = _delivery_id(token, UNSUBSCRIBE_PURPOSE)
    try:
        ref = events.lookup(db(), delivery_id)
    except events.UnknownDelivery:
        abort(404)
    i18n.use_newsletter_locale(db(), ref.newsletter_id)
    return render_template("web/unsubscribe.html", token=token, ref=ref, done=False)


@blueprint.post(links.ROUTES["unsubscribe"])
@csrf.exempt  # RFC 8058: mail clients POST with no cookie; the signed token authorises
def unsubscribe(token: str) -> tuple[str, int]:
    """One-click unsubscribe: effective at once, no confirmation step."""
    delivery_id = _delivery_id(token, UNSUBSCRIBE_PURPOSE)
    session = db()
    try:
        reason = (request.form.get("reason") or "").strip()[:500] or None
        i18n.use_newsletter_locale(session, events.lookup(session, delivery_id).newsletter_id)
        events.unsubscribe(session, delivery_id, reason=reason)
        session.commit()
    except events.UnknownDelivery:
        abort(404)
    return render_template("web/unsubscribe.html", token=token, ref=None, done=True), 200


@blueprint.get(links.ROUTES["open"])
def open_pixel(token: str) -> Response:
    """The open pixel, for what service.web.beacon (which answers it first) leaves to Flask.

    The same function records the open and the same headers go out (the hardening ones
    from the app's after_request hook), so the answer is the fast path's to the byte.
    """
    status = beacon.record_open(settings().secret_key, event_buffer(), token, _seen())
    return Response(beacon.PIXEL, status=status, headers=beacon.CONTENT)


@blueprint.get(links.ROUTES["click"])
def click(token: str, index: int) -> Response:
    """Redirect to the link stored with the edition; the click is written with its batch."""
    delivery_id = _delivery_id(token, CLICK_PURPOSE)
    try:
        target = events.click_target(read_only(db()), delivery_id, index)
    except events.UnknownDelivery:
        abort(404)
    finally:
        close_db()  # end the read now: the redirect needs nothing more
    event_buffer().add(events.pending(EventKind.CLICK, delivery_id, _seen(), link_index=index))
    return redirect(target, code=302)  # type: ignore[return-value]


@blueprint.get(links.ROUTES["feedback"])
def feedback(token: str, answer: str) -> str:
    """Hand "did you like this edition?" to the event buffer and thank the reader."""
    delivery_id = _delivery_id(token, FEEDBACK_PURPOSE)
    session = read_only(db())  # the newsletter's language: a read, no write lock
    try:
        i18n.use_newsletter_locale(session, events.lookup(session, delivery_id).newsletter_id)
    except events.UnknownDelivery:
        abort(404)
    event_buffer().add(events.feedback(delivery_id, answer == "yes", _seen()))
    return render_template("web/feedback.html", liked=answer == "yes")
