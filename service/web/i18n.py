"""The web pages' language: `_()` and `ngettext()` in views and templates, and the locale.

Messages are written in English in the code and translated by the gettext
catalogues of service.translations (README, "Translations"); a missing
translation falls back to the English text (tests/unit/test_translations.py
checks there is none). Fields are `{name}` str.format ones. Reader pages speak
their newsletter's language (`use_newsletter_locale`) or the reader's
(`translator`); editor pages follow `?lang=` (kept as the editor's choice in
`Editor.language`), then that saved choice, then a choice made before logging in (the
session), then the language of the newsletter the page is about (its `slug` or
`edition_id`; else the first newsletter), then the browser's Accept-Language.
Flask-Babel is given the same selection and catalogues, so its own helpers agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlencode

import flask_babel
from flask import Flask, current_app, g, has_request_context, request, session, url_for
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from service import translations
from service.models import Edition, Editor, Newsletter
from service.translations import Translator
from service.web import deps

LOCALES = translations.LANGUAGES
DEFAULT_LOCALE = translations.SOURCE_LANGUAGE
_BABEL_LOCALES = MappingProxyType(translations.BABEL_LOCALES)


def catalogue(locale: str) -> Mapping[str, str]:
    """The translated messages of one locale (empty for English, the source language)."""
    return translations.messages(locale).single


def counted_catalogue(locale: str) -> Mapping[tuple[str, str], tuple[str, ...]]:
    """The translated counted messages of one locale: (singular, plural) to their forms."""
    return translations.messages(locale).counted


_primary = translations.language_of


def use_locale(language: str) -> None:
    """Make this request speak `language` whatever the browser asks (reader pages)."""
    g.hebdo_locale = _primary(language) or DEFAULT_LOCALE
    flask_babel.refresh()  # Flask-Babel may have cached the locale chosen before


def use_newsletter_locale(db_session: Session, newsletter_id: int) -> None:
    """Make this request speak the language of a newsletter."""
    language = db_session.scalar(select(Newsletter.language).where(Newsletter.id == newsletter_id))
    use_locale(language or DEFAULT_LOCALE)


def get_locale() -> str:
    """The locale of the current request."""
    if not has_request_context():
        return DEFAULT_LOCALE
    forced: str | None = g.get("hebdo_locale")
    if forced:
        return forced
    known: str | None = g.get("hebdo_chosen_locale")
    if known:
        return known
    g.hebdo_chosen_locale = _choose()
    return str(g.hebdo_chosen_locale)


def _choose() -> str:
    """The order of editor pages; computed once per request (a streamed page asks late)."""
    editor: Editor | None = g.get("editor")  # set by editor_required before the view
    chosen = _primary(request.args.get("lang"))
    if chosen:
        session["lang"] = chosen  # the switch sticks for the next pages
        return chosen
    for saved in (_saved_language(editor), session.get("lang")):
        language = _primary(saved)
        if language:
            return language
    # Only for a logged-in editor: a visitor (the login page) has no newsletter of their own.
    by_page = _page_language() if editor is not None else None
    return by_page or request.accept_languages.best_match(LOCALES) or DEFAULT_LOCALE


def _saved_language(editor: Editor | None) -> str | None:
    """The editor's saved choice, without loading anything once their session is gone."""
    if editor is None:
        return None
    state = inspect(editor)
    if "language" in state.dict or not state.detached:
        return editor.language
    return None


def _remember_choice() -> None:
    """Before the view: a logged-in editor's `?lang=` becomes their saved choice."""
    chosen = _primary(request.args.get("lang"))
    if not chosen or session.get("sid") is None:
        return
    editor = deps.current_editor()
    if editor is not None and editor.language != chosen:
        editor.language = chosen
        deps.db().commit()  # nothing else is pending: the view has not run yet


def _page_language() -> str | None:
    """The language of the newsletter the page is about, else of the first newsletter."""
    if "hebdo_page_language" not in g:
        g.hebdo_page_language = _newsletter_language(request.view_args or {})
    found: str | None = g.hebdo_page_language
    return found


def _newsletter_language(view_args: Mapping[str, object]) -> str | None:
    own = deps.db()
    slug, edition_id = view_args.get("slug"), view_args.get("edition_id")
    language = None
    if isinstance(slug, str):
        language = own.scalar(select(Newsletter.language).where(Newsletter.slug == slug))
    elif isinstance(edition_id, int):
        language = own.scalar(
            select(Newsletter.language)
            .join(Edition, Edition.newsletter_id == Newsletter.id)
            .where(Edition.id == edition_id)
        )
    if language is None:
        language = own.scalar(select(Newsletter.language).order_by(Newsletter.id).limit(1))
    return _primary(language)


def gettext(message: str, **values: object) -> str:
    """`message` in the request's locale, with `{name}` fields filled from `values`."""
    return translations.gettext(get_locale(), message, **values)


_ = gettext


def marked(message: str) -> str:
    """A message the domain marked with `N_()` (extracted there), in the request's locale."""
    return translations.gettext(get_locale(), message)


def babel_locale() -> str:
    """The request's locale as Babel names it, for dates and numbers."""
    return _BABEL_LOCALES[get_locale()]


def format_number(n: int) -> str:
    """`n` with the thousands separator of the request's locale (1,234 or 1 234)."""
    return translations.format_number(n, get_locale())


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    """The form of a counted message that `n` takes, with `{n}` filled in (formatted)."""
    # The catalogue's Plural-Forms pick the form: French puts 0 in the singular.
    return translations.ngettext(get_locale(), singular, plural, n, **values)


def npgettext(context: str, singular: str, plural: str, n: int, **values: object) -> str:
    """A counted message as meant in `context`, where the same English means another thing."""
    return translations.npgettext(get_locale(), context, singular, plural, n, **values)


def status_label(value: str) -> str:
    """The word shown for a status, event kind or suppression reason (an enum's value)."""
    # One word per value whatever the enum: the French forms read right for each
    # (an edition or the copy of it sent to one reader is "envoyée").
    labels = {
        "draft": _("draft"),
        "scheduled": _("scheduled"),
        "sending": _("sending"),
        "paused": _("paused"),
        "sent": _("sent"),
        "cancelled": _("cancelled"),
        "queued": _("queued"),
        "failed": _("failed"),
        "pending": _("pending"),
        "confirmed": _("confirmed"),
        "unsubscribed": _("unsubscribed"),
        "active": _("active"),
        "bounced": _("bounced"),
        "complained": _("complained"),
        "open": _("open"),
        "click": _("click"),
        "unsubscribe": _("unsubscribe"),
        "feedback": _("feedback"),
        "bounce": _("bounce"),
        "complaint": _("complaint"),
        "hard_bounce": _("hard bounce"),
        "manual": _("manual"),
        "erased": _("erased"),
    }
    return labels.get(value, value)


def role_label(value: str) -> str:
    """The word shown for an editor's role (EditorRole's value)."""
    labels = {"admin": _("admin"), "editor": _("editor"), "viewer": _("viewer")}
    return labels.get(value, value)


def switch_url(locale: str) -> str:
    """This page in `locale`: its address with `?lang=` set, other parameters kept."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [locale]
    # A page answering a form post may live at an address that a link cannot open.
    if request.method != "GET" and not _answers_get(request.path):
        return url_for("dashboard.index", lang=locale)
    return f"{request.script_root}{request.path}?{urlencode(args, doseq=True)}"


def _answers_get(path: str) -> bool:
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return False
    try:
        adapter.match(path, method="GET")
    except HTTPException:
        return False
    return True


def translator(language: str) -> Translator:
    """A `_(message, **values)` speaking `language` whatever the request (reader pages)."""
    return translations.translator(language)


def init_app(app: Flask) -> None:
    """Expose `_`, `ngettext`, the locale and its formats to every template."""
    # Flask-Babel over the same catalogues and locale choice; our `_` keeps {name} fields
    # (Flask-Babel's own gettext fills %(name)s ones), so Jinja's globals stay ours.
    flask_babel.Babel(
        app,
        locale_selector=get_locale,
        default_locale=DEFAULT_LOCALE,
        default_domain=translations.DOMAIN,
        default_translation_directories=str(translations.CATALOGUES),
        configure_jinja=False,
    )
    app.before_request(_remember_choice)
    app.jinja_env.globals.update(
        _=gettext,
        ngettext=ngettext,
        npgettext=npgettext,
        get_locale=get_locale,
        format_number=format_number,
        status_label=status_label,
        role_label=role_label,
        marked=marked,
        switch_url=switch_url,
    )
