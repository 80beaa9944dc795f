"""French for the reader pages (signup, confirmation, preference centre).

Templates say `_("English text", field=value)`; a reader page speaks the
newsletter's language, or the reader's own in the preference centre. English is
the source language; a missing French entry falls back to English, and
tests/web/test_reader.py checks that every message of the templates has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

_FR: Mapping[str, str] = MappingProxyType(
    {
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
        "Preview": "Aperçu",
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
        "Unsubscribe": "Se désabonner",
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

CATALOGUES: Mapping[str, Mapping[str, str]] = MappingProxyType({"fr": _FR})

Translate = Callable[..., str]


def translator(language: str) -> Translate:
    """A `_(message, **values)` function speaking `language` (English as the fallback)."""
    catalogue = CATALOGUES.get(language, MappingProxyType({}))

    def translate(message: str, **values: object) -> str:
        text = catalogue.get(message, message)
        return text.format(**values) if values else text

    return translate
