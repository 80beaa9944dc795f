"""Reader pages: signup with double opt-in, confirmation, and the preference centre.

Readers have no account: the signup form is public and rate-limited per IP,
the confirmation link and the preference link are signed tokens. The reader's
data (export, erasure) opens only from a fresh link mailed on request to their
own address (/d/<token>/…), never from the preference link. Every form
here carries a CSRF token except the embeddable signup form (see
`subscribe_embed`). Views parse input, call one operation in service.audience.signup or
service.audience.preferences, commit, then mail any notice and answer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from urllib.parse import urlsplit

from babel.dates import format_date
from flask import Blueprint, Response, flash, get_flashed_messages, redirect, request, url_for
from flask import render_template as flask_render
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from service import newsletters, ratelimit
from service.addresses import InvalidAddress
from service.audience import preferences, signup
from service.mail import links, notices
from service.mail.transport import SmtpTransport
from service.models import Newsletter, Subscriber, Subscription, SubscriptionStatus, utcnow
from service.numbers import int_or_none
from service.text import UnusableText
from service.web.deps import db, settings
from service.web.extensions import csrf
from service.web.i18n import translator

log = logging.getLogger(__name__)

blueprint = Blueprint("reader", __name__)

NOTICE_SMTP_TIMEOUT = 10.0  # seconds a visitor may wait for the relay before we give up
HONEYPOT = "website"  # hidden from people, filled in by form-spamming robots
PAUSE_CHOICES = (1, 2, 4, 8, 12)

Page = tuple[str, int]


@blueprint.after_request
def _private(response: BaseResponse) -> BaseResponse:
    # Pages reached through personal links: never cached, never indexed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _render(template: str, lang: str, status: int = 200, **context: object) -> Page:
    return (
        flask_render(
            f"web/reader/{template}", page_lang=lang, _=translator(lang), lang=lang, **context
        ),
        status,
    )


def _newsletter(slug: str) -> Newsletter | None:
    try:
        return newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        return None


def _not_found(lang: str = "fr") -> Page:
    return _render("link_error.html", lang, 404, kind="unknown", newsletter=None)


def _send(result: signup.SignupResult) -> None:
    """Mail the notice a signup calls for, after its commit; failures are logged only."""
    if result.notice is not None:
        _mail(result.subscription_id, result.notice)


def _mail(subscription_id: int, notice: notices.Notice) -> bool:
    """Mail a notice about this subscription now, after the commit; whether it went."""
    session = db()
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        return False
    config = settings()
    # A short timeout: the visitor is waiting, and a failure loses nothing (see send_notice).
    relays = tuple(
        dataclasses.replace(r, timeout=min(r.timeout, NOTICE_SMTP_TIMEOUT))
        for r in config.smtp_relays
    )
    with SmtpTransport(relays) as transport:
        sent = signup.send_notice(session, subscription, notice, config, transport)
    session.commit()
    return sent


# --- Signup ---------------------------------------------------------------------------


def _signup(newsletter: Newsletter, source: str) -> Page:
    """Handle a signup post; the answer is the same whatever the address's state."""
    session = db()
    lang = newsletter.language
    ip = request.remote_addr or "unknown"
    allowed = ratelimit.hit(session, f"signup:ip:{ip}", 3600, signup.SIGNUPS_PER_IP_PER_HOUR)
    session.commit()
    if not allowed:
        return _render("subscribe.html", lang, 429, newsletter=newsletter, state="limited")
    if request.form.get(HONEYPOT):
        # Looks like success to the robot, so it learns nothing to adapt to.
        return _render("subscribe.html", lang, newsletter=newsletter, state="sent")
    email = request.form.get("email", "")
    name = request.form.get("name", "")
    language = request.form.get("language", lang)
    for attempt in (1, 2):
        try:
            result = signup.request(
                session,
                newsletter,
                email=email,
                name=name,
                locale=language,
                source=source,
                ip=ip,
                user_agent=request.user_agent.string,
            )
            session.commit()
            break
        except InvalidAddress:
            session.rollback()
            return _render(
                "subscribe.html", lang, 400, newsletter=newsletter, state="form", error=True
            )
        except UnusableText:
            session.rollback()
            return _render(
                "subscribe.html", lang, 400, newsletter=newsletter, state="form", name_error=True
            )
        except IntegrityError:
            # Two posts for a new address at once: the other one created the row.
            session.rollback()
            if attempt == 2:
                raise
    _send(result)
    return _render("subscribe.html", lang, newsletter=newsletter, state="sent")


@blueprint.route(links.ROUTES["subscribe"], methods=["GET", "POST"])
def subscribe(slug: str) -> Page:
    """The public signup page of a newsletter."""
    newsletter = _newsletter(slug)
    if newsletter is None:
        return _not_found()
    if request.method == "POST":
        return _signup(newsletter, f"signup page /n/{slug}/subscribe")
    return _render("subscribe.html", newsletter.language, newsletter=newsletter, state="form")


@blueprint.post(links.ROUTES["subscribe"] + "/embed")
@csrf.exempt
def subscribe_embed(slug: str) -> Page:
    """Signups from the form pasted on other sites.

    A form served by another site cannot carry our CSRF token, so this endpoint
    is exempt. What CSRF would prevent here, a third party submitting an address,
    is what double opt-in already makes harmless: a post only records a pending
    subscription and mails a link that the address's owner alone can use. The
    honeypot field and the per-IP limit keep robots from using it to send mail.
    """
    newsletter = _newsletter(slug)
    if newsletter is None:
        return _not_found()
    origin = request.headers.get("Origin") or request.headers.get("Referer") or ""
    host = urlsplit(origin).netloc or "unknown site"
    return _signup(newsletter, f"embedded form on {host}")


@blueprint.get("/n/<slug>/embed")
def embed(slug: str) -> Page:
    """The HTML form to paste on another site, ready to copy."""
    newsletter = _newsletter(slug)
    if newsletter is None:
        return _not_found()
    lang = newsletter.language
    action = f"{settings().base_url}/n/{slug}/subscribe/embed"
    snippet = flask_render(
        "web/reader/embed_snippet.html",
        newsletter=newsletter,
        action=action,
        honeypot=HONEYPOT,
        lang=lang,
        _=translator(lang),
    ).strip()
    return _render("embed.html", lang, newsletter=newsletter, snippet=snippet)


# --- Confirmation ---------------------------------------------------------------------


def _confirmable(slug: str, token: str) -> Subscription | Page:
    newsletter = _newsletter(slug)
    if newsletter is None:
        return _not_found()
    try:
        subscription = signup.verify_link(db(), settings().secret_key, token)
    except signup.LinkExpired:
        return _render(
            "link_error.html", newsletter.language, 410, kind="expired", newsletter=newsletter
        )
    except signup.BadLink:
        return _render(
            "link_error.html", newsletter.language, 404, kind="invalid", newsletter=newsletter
        )
    if subscription.newsletter_id != newsletter.id:
        return _render(
            "link_error.html", newsletter.language, 404, kind="invalid", newsletter=newsletter
        )
    return subscription


def _confirmed_page(subscription: Subscription, already: bool) -> Page:
    newsletter = subscription.newsletter
    reader = subscription.subscriber
    prefs = signup.preferences_token(settings().secret_key, reader.id, reader.email)
    return _render(
        "confirm.html",
        newsletter.language,
        newsletter=newsletter,
        state="already" if already else "done",
        preferences_url=url_for("reader.preferences_page", token=prefs),
    )


@blueprint.get(links.ROUTES["confirm"])
def confirm_page(slug: str, token: str) -> Page:
    """Ask for one click: mail scanners fetch links, and must not confirm for the reader."""
    found = _confirmable(slug, token)
    if not isinstance(found, Subscription):
        return found
    if found.status == SubscriptionStatus.CONFIRMED and signup.receives(db(), found):
        return _confirmed_page(found, already=True)
    return _render(
        "confirm.html", found.newsletter.language, newsletter=found.newsletter, state="ask"
    )


@blueprint.post(links.ROUTES["confirm"])
def confirm(slug: str, token: str) -> Page:
    """Confirm the subscription (harmless twice)."""
    found = _confirmable(slug, token)
    if not isinstance(found, Subscription):
        return found
    session = db()
    changed = signup.confirm(session, found)
    session.commit()
    return _confirmed_page(found, already=not changed)


# --- Preference centre ----------------------------------------------------------------


def _reader(token: str) -> preferences.Reader | None:
    try:
        return preferences.resolve(db(), settings().secret_key, token)
    except preferences.UnknownReader:
        return None


def _back(token: str, message: str) -> BaseResponse:
    flash(message, "reader")
    return redirect(url_for("reader.preferences_page", token=token), code=303)


def _send_all(results: list[signup.SignupResult]) -> None:
    for result in results:
        _send(result)


@blueprint.get(links.ROUTES["preferences"])
def preferences_page(token: str) -> Page:
    """The preference centre."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    session = db()
    subscriber = reader.subscriber
    until = preferences.paused_until(session, subscriber)
    paused_label = (
        format_date(until.date(), format="long", locale=subscriber.locale) if until else None
    )
    return _render(
        "preferences.html",
        subscriber.locale,
        token=token,
        subscriber=subscriber,
        choices=preferences.choices(session, subscriber),
        context_newsletter=reader.newsletter_id,
        paused_label=paused_label,
        pause_choices=PAUSE_CHOICES,
        messages=get_flashed_messages(category_filter=["reader"]),
    )


@blueprint.post(links.ROUTES["preferences"])
def preferences_save(token: str) -> Page | BaseResponse:
    """Save name, language and the chosen newsletters."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    session = db()
    subscriber = reader.subscriber
    locale = request.form.get("language", subscriber.locale)
    if locale not in signup.LANGUAGES:
        locale = subscriber.locale
    try:
        preferences.update_profile(
            session, subscriber, name=request.form.get("name", subscriber.name), locale=locale
        )
    except UnusableText:
        return _back(token, "name_invalid")
    wanted = {n for v in request.form.getlist("newsletter") if (n := int_or_none(v)) is not None}
    results = preferences.choose(
        session,
        subscriber,
        wanted,
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    session.commit()
    _send_all(results)
    message = "saved_confirm" if any(r.notice for r in results) else "saved"
    return _back(token, message)


@blueprint.post(links.ROUTES["preferences"] + "/pause")
def preferences_pause(token: str) -> Page | BaseResponse:
    """Pause every newsletter for some weeks, or resume now."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    session = db()
    if request.form.get("action") == "resume":
        preferences.resume(session, reader.subscriber)
        session.commit()
        return _back(token, "resumed")
    weeks = int_or_none(request.form.get("weeks"))
    if weeks not in PAUSE_CHOICES:
        return _back(token, "pause_invalid")
    preferences.pause(session, reader.subscriber, weeks)
    session.commit()
    return _back(token, "paused")


@blueprint.post(links.ROUTES["preferences"] + "/unsubscribe")
def preferences_unsubscribe(token: str) -> Page | BaseResponse:
    """Unsubscribe from one newsletter or from all, with an optional reason."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    session = db()
    reason = request.form.get("reason", "")
    target = int_or_none(request.form.get("newsletter", "all"))
    if target is not None:
        try:
            preferences.leave(session, reader.subscriber, target, reason=reason)
        except LookupError:
            return _back(token, "nothing_to_do")
    else:
        preferences.leave_all(session, reader.subscriber, reason=reason)
    session.commit()
    return _back(token, "unsubscribed")


@blueprint.post(links.ROUTES["preferences"] + "/resubscribe/<int:newsletter_id>")
def preferences_resubscribe(token: str, newsletter_id: int) -> Page | BaseResponse:
    """Come back to a newsletter: through the double opt-in, like a new signup."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    session = db()
    newsletter = session.get(Newsletter, newsletter_id)
    if newsletter is None:
        return _not_found(reader.subscriber.locale)
    result = preferences.join(
        session,
        reader.subscriber,
        newsletter,
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    session.commit()
    _send(result)
    return _back(token, "saved_confirm")


@blueprint.post(links.ROUTES["preferences"] + "/data")
def preferences_data(token: str) -> Page | BaseResponse:
    """Mail the reader a link to download or erase their data; the link alone acts."""
    reader = _reader(token)
    if reader is None:
        return _not_found()
    notice = {"export": notices.Notice.DATA_EXPORT, "erase": notices.Notice.DATA_ERASE}.get(
        request.form.get("action", "")
    )
    if notice is None:
        return _back(token, "nothing_to_do")
    session = db()
    try:
        subscription = preferences.request_data_link(session, reader)
    except preferences.TooManyDataLinks:
        session.commit()  # the refused request counts too
        return _back(token, "data_limited")
    except LookupError:
        return _back(token, "nothing_to_do")
    session.commit()
    return _back(token, "data_sent" if _mail(subscription.id, notice) else "data_not_sent")


# --- The reader's data, from a link mailed to them --------------------------------------


def _data_reader(token: str, purpose: str) -> Subscriber | Page:
    try:
        return preferences.open_data_link(db(), settings().secret_key, purpose, token)
    except preferences.DataLinkExpired as expired:
        return _render("link_error.html", expired.locale, 410, kind="data_expired", newsletter=None)
    except preferences.UnknownReader:
        return _not_found()


@blueprint.get(links.ROUTES["data_export"])
def data_export(token: str) -> Page | Response:
    """Download everything held about the reader, as JSON."""
    subscriber = _data_reader(token, signup.EXPORT_PURPOSE)
    if not isinstance(subscriber, Subscriber):
        return subscriber
    data = preferences.export(db(), subscriber)
    day = utcnow().date().isoformat()
    response = Response(
        json.dumps(data, ensure_ascii=False, indent=2) + "\n",
        mimetype="application/json",
    )
    response.headers["Content-Disposition"] = f'attachment; filename="hebdo-data-{day}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.route(links.ROUTES["data_erase"], methods=["GET", "POST"])
def data_erase(token: str) -> Page:
    """Ask once more, then erase the reader and their personal data.

    GET only shows the form (link scanners follow GETs); the POST needs the
    CSRF token and the ticked box.
    """
    subscriber = _data_reader(token, signup.ERASE_PURPOSE)
    if not isinstance(subscriber, Subscriber):
        return subscriber
    lang = subscriber.locale
    if request.method == "GET":
        return _render("data_erase.html", lang, token=token, subscriber=subscriber, error=False)
    if request.form.get("confirm") != "yes":
        return _render("data_erase.html", lang, 400, token=token, subscriber=subscriber, error=True)
    session = db()
    preferences.erase(session, subscriber)
    session.commit()
    return _render("goodbye.html", lang)
