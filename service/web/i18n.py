"""French and English for the web pages: one catalogue, `_()` in views and templates.

Messages are written in English in the code and looked up here for French; a
missing translation falls back to the English text (tests/unit/test_i18n.py
checks there is none). Reader pages speak their newsletter's language
(`use_newsletter_locale`); editor pages follow `?lang=`, then the editor's
earlier choice kept in the session, then the browser's Accept-Language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        "Unsubscribe": "Se désabonner",
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
        # Reader pages: signup, confirmation and the preference centre.
        "(optional)": "(facultatif)",
        "1 week": "1 semaine",
        "{n} weeks": "{n} semaines",
        "About you": "Vous",
        "All my newsletters": "Toutes mes lettres",
        "Back to the signup form": "Revenir au formulaire d'inscription",
        "Changed your mind?": "Vous avez changé d'avis ?",
        "Check your inbox": "Regardez votre boîte de réception",
        "Choose how many weeks to pause.": "Choisissez la durée de la pause.",
        "Confirm my subscription": "Je confirme mon abonnement",
        "Confirm your subscription": "Confirmez votre abonnement",
        "Confirmation links work for 7 days. Sign up again and we will send you a new one.": (
            "Les liens de confirmation restent valables 7 jours. "
            "Inscrivez-vous de nouveau : nous vous en enverrons un autre."
        ),
        "Download everything we hold about you: your details, your consent records, "
        "the editions sent to you and what happened to them.": (
            "Téléchargez tout ce que nous conservons sur vous : vos informations, la trace "
            "de vos consentements, les éditions envoyées et ce qu'il en est advenu."
        ),
        "Download my data (JSON)": "Télécharger mes données (JSON)",
        "Email address": "Adresse e-mail",
        "Erase my data": "Effacer mes données",
        "Every email has a link to change your preferences or leave in one click.": (
            "Chaque lettre contient un lien pour modifier vos préférences "
            "ou vous désabonner en un clic."
        ),
        "Every signup gets an email with a link to confirm: nothing is sent to an address "
        "before its owner confirms it.": (
            "Chaque inscription reçoit un e-mail avec un lien de confirmation : "
            "rien n'est envoyé à une adresse avant que son titulaire ne l'ait confirmée."
        ),
        "First name": "Prénom",
        "For {email}": "Pour {email}",
        "HTML to copy": "HTML à copier",
        "I understand: erase everything about me.": (
            "J'ai compris : effacez tout ce qui me concerne."
        ),
        "If this address can receive {newsletter}, a message is on its way to it. Open it and "
        "follow its link to confirm: until then, we will send you nothing else.": (
            "Si cette adresse peut recevoir {newsletter}, un message est en route vers elle. "
            "Ouvrez-le et suivez son lien pour confirmer : d'ici là, nous ne vous enverrons "
            "rien d'autre."
        ),
        "If you erased your data, the links in our past emails no longer lead anywhere.": (
            "Si vous avez effacé vos données, les liens de nos anciens e-mails "
            "ne mènent plus nulle part."
        ),
        "It may have been cut: copy the whole address from the email into your browser.": (
            "Il a peut-être été coupé : copiez l'adresse complète depuis l'e-mail "
            "dans votre navigateur."
        ),
        "Language of our messages to you": "Langue de nos messages",
        "Language of these pages and of our messages to you": (
            "Langue de ces pages et de nos messages"
        ),
        "Link expired": "Lien expiré",
        "Link not valid": "Lien non valide",
        "Manage my preferences": "Gérer mes préférences",
        "Many signups came from your connection in the last hour. "
        "Please try again a little later.": (
            "De nombreuses inscriptions sont venues de votre connexion depuis une heure. "
            "Merci de réessayer un peu plus tard."
        ),
        "Not subscribed": "Non abonné·e",
        "Nothing after a few minutes? Look in your spam folder, then try again.": (
            "Rien après quelques minutes ? Regardez dans vos indésirables, puis réessayez."
        ),
        "One email a week. We first send you a link to confirm your address; "
        "you can leave in one click at any time.": (
            "Un e-mail par semaine. Nous vous envoyons d'abord un lien pour confirmer "
            "votre adresse ; vous pourrez partir en un clic à tout moment."
        ),
        "One last click and you will receive {newsletter}.": (
            "Un dernier clic et vous recevrez {newsletter}."
        ),
        "Paste this HTML into any page to let visitors subscribe to {newsletter}. Style it as "
        "you like; keep the hidden field, which stops robots.": (
            "Collez ce HTML dans une page pour permettre aux visiteurs de s'abonner à "
            "{newsletter}. Habillez-le à votre goût, mais gardez le champ caché : "
            "il arrête les robots."
        ),
        "Pause": "Mettre en pause",
        "Receive nothing for": "Ne rien recevoir pendant",
        "Resume now": "Reprendre maintenant",
        "Save my preferences": "Enregistrer mes préférences",
        "Saved. We sent you an email: follow its link to confirm each new subscription.": (
            "C'est enregistré. Nous vous avons écrit : suivez le lien de l'e-mail "
            "pour confirmer chaque nouvel abonnement."
        ),
        "Sign up again": "Se réinscrire",
        "Signup form for your site": "Formulaire d'inscription pour votre site",
        "Stop receiving": "Ne plus recevoir",
        "Subscribe again": "Me réabonner",
        "Subscribe to {newsletter}": "S'abonner à {newsletter}",
        "Subscribe": "S'abonner",
        "Subscribed": "Abonné·e",
        "Subscription confirmed": "Abonnement confirmé",
        "Take a break": "Faire une pause",
        "Thank you for reading us. Goodbye!": "Merci de nous avoir lus. Au revoir !",
        "There was nothing to change.": "Il n'y avait rien à changer.",
        "This email address does not look right. Please check it.": (
            "Cette adresse e-mail semble incorrecte. Merci de la vérifier."
        ),
        "This link does not work": "Ce lien ne fonctionne pas",
        "This link has expired": "Ce lien a expiré",
        "Tick the box to confirm that you want everything erased.": (
            "Cochez la case pour confirmer que vous voulez tout effacer."
        ),
        "Ticking a newsletter sends you an email to confirm it; unticking one stops it at once.": (
            "Cocher une lettre vous envoie un e-mail pour la confirmer ; "
            "la décocher l'arrête aussitôt."
        ),
        "Too many attempts": "Trop de tentatives",
        "Unsubscribed": "Désabonné·e",
        "Waiting for your confirmation (see your inbox)": (
            "En attente de votre confirmation (voir votre boîte de réception)"
        ),
        "Welcome! You will receive {newsletter} from its next edition.": (
            "Bienvenue ! Vous recevrez {newsletter} dès sa prochaine édition."
        ),
        "Why are you leaving?": "Pourquoi partez-vous ?",
        "You are unsubscribed. It takes effect at once.": (
            "Vous êtes désabonné·e, avec effet immédiat."
        ),
        "You left {newsletter}. Come back with one click; we will ask you to confirm by email.": (
            "Vous avez quitté {newsletter}. Revenez en un clic ; nous vous demanderons "
            "de confirmer par e-mail."
        ),
        "Your address, name, subscriptions and history are deleted for good. "
        "Our statistics keep only anonymous counts.": (
            "Votre adresse, votre nom, vos abonnements et leur historique sont supprimés "
            "définitivement. Nos statistiques ne gardent que des totaux anonymes."
        ),
        "Your address, your name, your subscriptions and their history are deleted. "
        "We will not write to you again.": (
            "Votre adresse, votre nom, vos abonnements et leur historique sont supprimés. "
            "Nous ne vous écrirons plus."
        ),
        "Your data is erased": "Vos données sont effacées",
        "Your data": "Vos données",
        "Your newsletters are back.": "Vos lettres reprennent.",
        "Your newsletters are paused until {date}.": "Vos lettres sont en pause jusqu'au {date}.",
        "Your newsletters are paused.": "Vos lettres sont en pause.",
        "Your newsletters": "Vos lettres",
        "Your preferences are saved.": "Vos préférences sont enregistrées.",
        "Your preferences": "Vos préférences",
        "Your subscription to {newsletter} was already confirmed: nothing more to do.": (
            "Votre abonnement à {newsletter} était déjà confirmé : rien de plus à faire."
        ),
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

Translate = Callable[..., str]


def translator(language: str) -> Translate:
    """A `_(message, **values)` speaking `language` whatever the request (reader pages)."""
    messages = catalogue(_primary(language) or DEFAULT_LOCALE)

    def translate(message: str, **values: object) -> str:
        text = messages.get(message, message)
        return text.format(**values) if values else text

    return translate


def init_app(app: Flask) -> None:
    """Expose `_` and `get_locale` to every template."""
    app.jinja_env.globals.update(_=gettext, get_locale=get_locale)
