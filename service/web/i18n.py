"""French and English for the web pages: one catalogue, `_()` in views and templates.

Messages are written in English in the code and looked up here for French; a
missing translation falls back to the English text (tests/unit/test_i18n.py
checks there is none). Reader pages speak their newsletter's language
(`use_newsletter_locale`); editor pages follow `?lang=`, then the editor's
earlier choice kept in the session, then the browser's Accept-Language.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flask import Flask, g, has_request_context, request, session
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Newsletter

LOCALES = ("fr", "en")
DEFAULT_LOCALE = "en"

_FR: Mapping[str, str] = MappingProxyType(
    {
        # Reader pages: unsubscribe and feedback.
        "Unsubscribe": "Désabonnement",
        "Unsubscribe?": "Se désabonner ?",
        "One click and you will not receive this newsletter any more.": (
            "Un clic et vous ne recevrez plus cette lettre."
        ),
        "Why are you leaving? (optional)": "Pourquoi partez-vous ? (facultatif)",
        "Unsubscribe me": "Me désabonner",
        "You are unsubscribed": "Vous êtes désabonné·e",
        "You will not receive this newsletter any more.": "Vous ne recevrez plus cette lettre.",
        "Thank you": "Merci",
        "Thank you!": "Merci !",
        "Glad you enjoyed this edition.": "Ravis que cette édition vous ait plu.",
        "Thanks for telling us; we will do better.": (
            "Merci de nous l'avoir dit : nous ferons mieux."
        ),
        # Reader pages: the archive.
        "Archive": "Archives",
        "Every edition of {newsletter}, newest first.": (
            "Toutes les éditions de {newsletter}, de la plus récente à la plus ancienne."
        ),
        "No edition has been published yet.": "Aucune édition n'a encore été publiée.",
        "Atom feed": "Flux Atom",
        "Edition {number}": "Édition n° {number}",
        # Editor pages: preview and test send.
        "Preview": "Aperçu",
        "Preview of edition {number}": "Aperçu de l'édition n° {number}",
        "Back to the edition": "Retour à l'édition",
        "Sample recipient": "Destinataire fictif",
        "Links in the preview lead nowhere: they carry no real delivery.": (
            "Les liens de l'aperçu ne mènent nulle part : ils ne portent aucun envoi réel."
        ),
        "This is the frozen rendering that subscribers receive.": (
            "Voici le rendu figé que reçoivent les abonnés."
        ),
        "Subject": "Objet",
        "Whole message": "Message entier",
        "HTML part": "Partie HTML",
        "{size} of {limit}": "{size} sur {limit}",
        "Under Gmail's clipping limit.": "Sous la limite de coupure de Gmail.",
        "Close to Gmail's clipping limit: consider shortening the edition.": (
            "Proche de la limite de coupure de Gmail : pensez à raccourcir l'édition."
        ),
        "Over Gmail's clipping limit: Gmail will cut the end of the edition.": (
            "Au-delà de la limite de Gmail : Gmail coupera la fin de l'édition."
        ),
        "Phone": "Téléphone",
        "Desktop": "Ordinateur",
        "Text part": "Partie texte",
        "Headers": "En-têtes",
        "Raw message": "Message brut",
        "Email at {width} px": "E-mail à {width} px",
        "Send a test": "Envoyer un essai",
        "Addresses": "Adresses",
        "Up to {count} addresses, separated by commas or new lines.": (
            "Jusqu'à {count} adresses, séparées par des virgules ou des retours à la ligne."
        ),
        "The subject starts with {prefix}; tests are left out of the statistics.": (
            "L'objet commence par {prefix} ; les essais ne comptent pas dans les statistiques."
        ),
        "Send the test": "Envoyer l'essai",
        "Test sent to {addresses}.": "Essai envoyé à {addresses}.",
        "Not sent to {address}: {reason}": "Non envoyé à {address} : {reason}",
        "Not a valid address: {addresses}": "Adresse invalide : {addresses}",
        "Give at least one address.": "Indiquez au moins une adresse.",
        "At most {count} addresses per test.": "Au plus {count} adresses par essai.",
        "Language": "Langue",
    }
)
_CATALOGUES: Mapping[str, Mapping[str, str]] = MappingProxyType({"fr": _FR})


def catalogue(locale: str) -> Mapping[str, str]:
    """The translations of one locale (empty for English, the source language)."""
    return _CATALOGUES.get(locale, MappingProxyType({}))


def _primary(language: str | None) -> str | None:
    if not language:
        return None
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else None


def use_locale(language: str) -> None:
    """Make this request speak `language` whatever the browser asks (reader pages)."""
    g.hebdo_locale = _primary(language) or DEFAULT_LOCALE


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
    chosen = _primary(request.args.get("lang"))
    if chosen:
        session["lang"] = chosen  # the switch sticks for the next pages
        return chosen
    saved = _primary(session.get("lang"))
    if saved:
        return saved
    return request.accept_languages.best_match(LOCALES) or DEFAULT_LOCALE


def gettext(message: str, **values: object) -> str:
    """`message` in the request's locale, with `{name}` fields filled from `values`."""
    text = catalogue(get_locale()).get(message, message)
    return text.format(**values) if values else text


_ = gettext


def init_app(app: Flask) -> None:
    """Expose `_` and `get_locale` to every template."""
    app.jinja_env.globals.update(_=gettext, get_locale=get_locale)
