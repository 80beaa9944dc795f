"""French and English for the web pages: one catalogue, `_()` in views and templates.

Messages are written in English in the code and looked up here for French; a
missing translation falls back to the English text (tests/unit/test_i18n.py
checks there is none). Counted messages go through `ngettext`, whose French forms
live in `_FR_COUNTED` (French puts 0 in the singular). Reader pages speak their
newsletter's language (`use_newsletter_locale`); editor pages follow `?lang=`, then
the editor's earlier choice kept in the session, then the browser's Accept-Language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from urllib.parse import urlencode

from babel.numbers import format_decimal
from flask import Flask, current_app, g, has_request_context, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from service.models import Newsletter

LOCALES = ("fr", "en")
DEFAULT_LOCALE = "en"
# en_GB rather than en_US, as in the emails: day-month order ("Saturday 05 July").
_BABEL_LOCALES = MappingProxyType({"fr": "fr_FR", "en": "en_GB"})

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
        # Editor pages: the header, login and the dashboard.
        "Editions": "Éditions",
        "Compose": "Rédiger",
        "Subscribers": "Abonnés",
        "Outbox": "Boîte d'envoi",
        "Log out": "Se déconnecter",
        "Log in": "Se connecter",
        "Email": "E-mail",
        "Password": "Mot de passe",
        "Unknown address or wrong password.": "Adresse inconnue ou mot de passe erroné.",
        "Title": "Titre",
        "Status": "Statut",
        "Delivered": "Envoyés",
        "web version": "version web",
        "No edition yet.": "Aucune édition pour l'instant.",
        "No newsletter yet:": "Aucune lettre pour l'instant :",
        # Editor pages: one edition, its schedule and its send.
        "edition {number}": "édition n° {number}",
        "Edit the content": "Modifier le contenu",
        "Preview and test send": "Aperçu et envoi d'essai",
        "Status:": "Statut :",
        "Goes out on": "Envoi prévu le",
        "{sent} sent · {queued} queued · {failed} failed · {cancelled} cancelled": (
            "{sent} envoyés · {queued} en attente · {failed} en échec · {cancelled} annulés"
        ),
        "About {duration} left at {rate} messages/s.": (
            "Encore environ {duration} au rythme de {rate} messages/s."
        ),
        "Estimating the time left…": "Estimation du temps restant…",
        "Sending": "Envoi",
        "Schedule for": "Programmer l'envoi",
        "Reschedule for": "Reprogrammer l'envoi",
        "time in {zone}": "fuseau horaire : {zone}",
        "Schedule": "Programmer",
        "Reschedule": "Reprogrammer",
        "Next weekly slot: {slot}": "Prochain créneau hebdomadaire : {slot}",
        "Unschedule": "Déprogrammer",
        "The relay did not answer; sending resumes by itself on {when}. Pause to keep it "
        "stopped.": (
            "Le relais n'a pas répondu ; l'envoi reprendra de lui-même le {when}. Mettez-le en "
            "pause pour qu'il reste arrêté."
        ),
        "Resume": "Reprendre",
        "Cancel this edition for good? Messages not yet sent will never go out.": (
            "Annuler définitivement cette édition ? Les messages pas encore envoyés ne partiront "
            "jamais."
        ),
        "Cancel sending": "Annuler l'envoi",
        "Sent on {when} UTC.": "Envoyée le {when} UTC.",
        "Cancelled on {when} UTC.": "Annulée le {when} UTC.",
        "Sent.": "Envoyée.",
        "Cancelled.": "Annulée.",
        "EEEE dd MMMM y, HH:mm": "EEEE d MMMM y 'à' HH:mm",
        "Give a date and a time.": "Indiquez une date et une heure.",
        "Scheduled for {when}.": "Programmée pour le {when}.",
        "Back to draft.": "Revenue à l'état de brouillon.",
        # Statuses, event kinds and suppression reasons (i18n.status_label).
        "draft": "brouillon",
        "scheduled": "programmée",
        "sending": "en cours d'envoi",
        "paused": "en pause",
        "sent": "envoyée",
        "cancelled": "annulée",
        "queued": "en file d'attente",
        "failed": "échec",
        "pending": "en attente",
        "confirmed": "confirmé",
        "unsubscribed": "désabonné",
        "active": "active",
        "bounced": "rejetée",
        "complained": "spam signalé",
        "open": "ouverture",
        "click": "clic",
        "unsubscribe": "désabonnement",
        "feedback": "avis",
        "bounce": "rejet",
        "complaint": "plainte",
        "hard bounce": "rejet définitif",
        "manual": "manuel",
        "erased": "données effacées",
        # Editor pages: the outbox.
        "To": "Destinataire",
        "Date": "Date",
        "Nothing delivered yet.": "Rien n'a encore été distribué.",
        "raw message": "message brut",
        # Editor pages: the composer.
        "Breadcrumb": "Fil d'Ariane",
        "Edit": "Modifier",
        "View": "Voir",
        "Paste a draft": "Coller un brouillon",
        "New edition": "Nouvelle édition",
        "Week": "Semaine",
        "Items": "Nouvelles",
        "No edition yet: start one, or paste a draft.": (
            "Aucune édition pour l'instant : commencez-en une, ou collez un brouillon."
        ),
        "Not saved.": "Non enregistré.",
        "Your text is kept below:": "Votre texte est conservé ci-dessous :",
        "go to the field": "aller au champ",
        "This edition is {status}: its content can no longer change.": (
            "Cette édition est {status} : son contenu ne peut plus changer."
        ),
        "Unsaved changes": "Modifications non enregistrées",
        "Saving…": "Enregistrement…",
        "Saved at {time}": "Enregistré à {time}",
        "Unsaved changes · last saved {time}": (
            "Modifications non enregistrées · dernier enregistrement à {time}"
        ),
        "Not saved: {message}": "Non enregistré : {message}",
        "Not saved ({status}). Your text is still here; copy it before reloading.": (
            "Non enregistré ({status}). Votre texte est toujours là ; copiez-le avant de recharger "
            "la page."
        ),
        "Not saved: the server cannot be reached. Your text is still here.": (
            "Non enregistré : le serveur est injoignable. Votre texte est toujours là."
        ),
        "Remove this entry and its text?": "Retirer cette entrée et son texte ?",
        "Hide preview": "Masquer l'aperçu",
        "Save": "Enregistrer",
        "Not saved": "Non enregistré",
        "Saved": "Enregistré",
        "Autosave every {seconds} s · Ctrl+S saves now": (
            "Enregistrement automatique toutes les {seconds} s · Ctrl+S enregistre tout de suite"
        ),
        "Email size": "Taille de l'e-mail",
        "Paste a draft into this edition": "Coller un brouillon dans cette édition",
        "Status and delivery": "Statut et envoi",
        "All editions": "Toutes les éditions",
        "Envelope": "Enveloppe",
        "The title is used when empty": "Le titre est repris s'il est vide",
        "Preheader": "Pré-en-tête",
        "Shown after the subject in most inboxes; about 90 characters.": (
            "Affiché après l'objet dans la plupart des messageries ; environ 90 caractères."
        ),
        "Masthead": "Bandeau",
        "Week from": "Semaine du",
        "to": "au",
        "Authors": "Auteurs",
        "Comma separated": "Séparés par des virgules",
        "Header image URL": "URL de l'image d'en-tête",
        "Alt text": "Texte alternatif",
        "Credit": "Crédit",
        "Synthesis": "Synthèse",
        "Headline": "Titre",
        "A first line {example} becomes the synthesis headline.": (
            "Une première ligne {example} devient le titre de la synthèse."
        ),
        "News items": "Nouvelles",
        "Add a news item": "Ajouter une nouvelle",
        "Related reads": "Lectures conseillées",
        "Add a related read": "Ajouter une lecture conseillée",
        "Markdown:": "Markdown :",
        "Sub-heading": "Intertitre",
        "bold": "gras",
        "list": "liste",
        "text": "texte",
        "News item": "Nouvelle",
        "Move up": "Monter",
        "Move this item up": "Monter cette nouvelle",
        "Move down": "Descendre",
        "Move this item down": "Descendre cette nouvelle",
        "Remove": "Retirer",
        "Remove this item": "Retirer cette nouvelle",
        "Body": "Corps",
        "Source name": "Nom de la source",
        "Source URL": "URL de la source",
        "Image (optional)": "Image (facultative)",
        "Image URL": "URL de l'image",
        "Kind": "Type",
        "URL": "URL",
        "Remove this related read": "Retirer cette lecture conseillée",
        "{size} KB of {limit} KB": "{size} Ko sur {limit} Ko",
        "Gmail will clip this edition: shorten it or move items to the next one.": (
            "Gmail coupera cette édition : raccourcissez-la ou reportez des nouvelles à la "
            "suivante."
        ),
        "Close to Gmail's 102 KB clipping limit.": (
            "Proche de la limite de coupure de Gmail (102 Ko)."
        ),
        "Well under Gmail's 102 KB clipping limit.": (
            "Bien en dessous de la limite de coupure de Gmail (102 Ko)."
        ),
        "News item {number}": "Nouvelle {number}",
        "Related read {number}": "Lecture conseillée {number}",
        "{area}, {field}": "{area}, {field}",
        "{place}: {reason}": "{place} : {reason}",
        "title": "titre",
        "date": "date",
        "source URL": "URL de la source",
        "image": "image",
        "image URL": "URL de l'image",
        "news items": "nouvelles",
        "week start": "début de semaine",
        "week end": "fin de semaine",
        "Not saved: you are logged out. Log in again in another tab, then save.": (
            "Non enregistré : vous êtes déconnecté·e. Reconnectez-vous dans un autre onglet, puis "
            "enregistrez."
        ),
        "Not saved yet: save when the edition is ready.": (
            "Pas encore enregistré : enregistrez quand l'édition est prête."
        ),
        "this edition was saved elsewhere (another tab or editor) since you opened it. Your "
        "text below is not saved; save again to replace theirs, or reload to see it.": (
            "cette édition a été enregistrée ailleurs (autre onglet ou autre rédacteur) depuis que "
            "vous l'avez ouverte. Votre texte ci-dessous n'est pas enregistré : enregistrez de "
            "nouveau pour remplacer l'autre version, ou rechargez la page pour la voir."
        ),
        "Saved.": "Enregistré.",
        "Autosave paused: this edition was saved elsewhere (another tab or editor). Save to "
        "replace their version, or copy your text and reload.": (
            "Enregistrement automatique suspendu : cette édition a été enregistrée ailleurs (autre "
            "onglet ou autre rédacteur). Enregistrez pour remplacer l'autre version, ou copiez "
            "votre texte et rechargez la page."
        ),
        "Edition {number} is {status}: it can no longer change.": (
            "L'édition n° {number} est {status} : elle ne peut plus changer."
        ),
        "The text changed since the last review: check the result again.": (
            "Le texte a changé depuis la dernière relecture : vérifiez de nouveau le résultat."
        ),
        "The draft cannot become an edition: {reason}": (
            "Le brouillon ne peut pas devenir une édition : {reason}"
        ),
        # Editor pages: pasting a draft.
        "Draft text": "Texte du brouillon",
        "Paste the whole text from the word processor: the title, the week, {synthesis}, "
        "{news}, then each news item with its title, its “Le …” date line, its text and its "
        "“Lire plus ?” line.": (
            "Collez le texte entier depuis le traitement de texte : le titre, la semaine, "
            "{synthesis}, {news}, puis chaque nouvelle avec son titre, sa ligne de date « Le … », "
            "son texte et sa ligne « Lire plus ? »."
        ),
        "This replaces the content of edition {number}.": (
            "Ceci remplace le contenu de l'édition n° {number}."
        ),
        "Read it again": "Relire",
        "Read the draft": "Lire le brouillon",
        "What was read": "Ce qui a été lu",
        "Replace edition {number} with this": "Remplacer l'édition n° {number} par ceci",
        "Create the draft edition": "Créer l'édition en brouillon",
        "Header image": "Image d'en-tête",
        "Source": "Source",
        "(no link)": "(pas de lien)",
        "No news item found: is there a NOUVELLES line?": (
            "Aucune nouvelle trouvée : y a-t-il une ligne NOUVELLES ?"
        ),
        "Link": "Lien",
        "Every line found its place": "Chaque ligne a trouvé sa place",
        "These lines will not be in the edition. Fix them in the text above and read it again, "
        "or add them in the composer afterwards.": (
            "Ces lignes ne figureront pas dans l'édition. Corrigez-les dans le texte ci-dessus et "
            "relisez-le, ou ajoutez-les ensuite dans l'éditeur."
        ),
        "Line": "Ligne",
        "Why": "Motif",
        "Text": "Texte",
        "Show this line in the text": "Montrer cette ligne dans le texte",
        # Editor pages: subscribers, one subscriber, bulk actions, import.
        "Import CSV": "Importer un CSV",
        "Export CSV": "Exporter en CSV",
        "Search": "Rechercher",
        "Address or name": "Adresse ou nom",
        "Newsletter": "Lettre",
        "All newsletters": "Toutes les lettres",
        "Subscription": "Abonnement",
        "Subscriptions": "Abonnements",
        "Any": "Indifférent",
        "Address status": "État de l'adresse",
        "Tag": "Étiquette",
        "Tags": "Étiquettes",
        "Filter": "Filtrer",
        "Reset": "Réinitialiser",
        "With": "Pour",
        "Which subscribers": "Quels abonnés",
        "selected rows": "lignes sélectionnées",
        "selected rows ({count})": "lignes sélectionnées ({count})",
        "Action": "Action",
        "Choose an action…": "Choisir une action…",
        "Add tag": "Ajouter une étiquette",
        "Remove tag": "Retirer une étiquette",
        "Unsubscribe from {newsletter}": "Désabonner de {newsletter}",
        "Unsubscribe from every newsletter": "Désabonner de toutes les lettres",
        "Delete (erase personal data)": "Supprimer (effacer les données personnelles)",
        "Apply": "Appliquer",
        "Select every row on this page": "Sélectionner toutes les lignes de la page",
        "Subscriber": "Abonné",
        "Address": "Adresse",
        "Added": "Ajouté le",
        "Select {email}": "Sélectionner {email}",
        "none": "aucun",
        "No subscriber matches.": "Aucun abonné ne correspond.",
        "Show everyone": "Afficher tout le monde",
        "Pages": "Pages",
        "Newer": "Plus récents",
        "Older": "Plus anciens",
        "No name": "Sans nom",
        "added": "ajouté le",
        "Delete…": "Supprimer…",
        "Remove tag {tag}": "Retirer l'étiquette {tag}",
        "No tag.": "Aucune étiquette.",
        "New tag": "Nouvelle étiquette",
        "Add": "Ajouter",
        "Attributes": "Attributs",
        "None.": "Aucun.",
        "Subscriptions and consent": "Abonnements et consentement",
        "Consent": "Consentement",
        "Confirmed": "Confirmé le",
        "Paused until": "En pause jusqu'au",
        "confirmation mailed": "confirmation envoyée le",
        "No subscription.": "Aucun abonnement.",
        "Deliveries": "Envois",
        "newest {count} shown": "{count} plus récents affichés",
        "Edition": "Édition",
        "Sent": "Envoyée le",
        "Attempts": "Tentatives",
        "Last error": "Dernière erreur",
        "Nothing sent yet.": "Aucun envoi pour l'instant.",
        "Events": "Événements",
        "When": "Quand",
        "Event": "Événement",
        "Detail": "Détail",
        "No open, click, answer or bounce yet.": (
            "Aucune ouverture, aucun clic, aucune réponse ni aucun rejet pour l'instant."
        ),
        "Suppressions for this address": "Blocages de cette adresse",
        "Reason": "Motif",
        "Applies to": "S'applique à",
        "every newsletter": "toutes les lettres",
        "Not suppressed: editions may be sent to this address.": (
            "Non bloquée : des éditions peuvent être envoyées à cette adresse."
        ),
        "Confirm": "Confirmation",
        "Their address, name, attributes, tags, subscriptions and consent records are erased, "
        "as when readers erase themselves: editions not yet sent to them are cancelled, and "
        "deliveries and events stay in the statistics without the person. Only a hash of each "
        "address stays on the suppression list, so importing an old list cannot bring them "
        "back. This cannot be undone.": (
            "Leur adresse, leur nom, leurs attributs, leurs étiquettes, leurs abonnements et la "
            "trace de leurs consentements sont effacés, comme lorsque les lecteurs s'effacent "
            "eux-mêmes : les éditions qui ne leur sont pas encore parvenues sont annulées, et les "
            "envois et événements restent dans les statistiques sans la personne. Seule une "
            "empreinte de chaque adresse reste dans les blocages : importer une ancienne liste ne "
            "peut pas les ramener. C'est irréversible."
        ),
        "They stop receiving {newsletter} at once, including an edition being sent now, and "
        "their address is suppressed. Only they can subscribe again, through the confirmation "
        "email.": (
            "Ils cessent aussitôt de recevoir {newsletter}, y compris une édition en cours "
            "d'envoi, et leur adresse est bloquée. Eux seuls pourront se réabonner, par l'e-mail "
            "de confirmation."
        ),
        "They stop receiving every newsletter at once, including an edition being sent now, and "
        "their address is suppressed. Only they can subscribe again, through the confirmation "
        "email.": (
            "Ils cessent aussitôt de recevoir toutes les lettres, y compris une édition en cours "
            "d'envoi, et leur adresse est bloquée. Eux seuls pourront se réabonner, par l'e-mail "
            "de confirmation."
        ),
        "… and {count} more": "… et {count} de plus",
        "Delete {count}": "Supprimer {count}",
        "Unsubscribe {count}": "Désabonner {count}",
        "Cancel": "Annuler",
        "Import subscribers": "Importer des abonnés",
        "Import into {newsletter}": "Importation dans {newsletter}",
        "Reading {file}…": "Lecture de {file}…",
        "The import stopped on an unexpected error. Batches finished before it are saved.": (
            "L'importation s'est arrêtée sur une erreur inattendue. Les lots terminés "
            "avant elle sont enregistrés."
        ),
        "(confirmed)": "(déjà confirmés)",
        "(pending confirmation)": "(en attente de confirmation)",
        "Rejected rows": "Lignes rejetées",
        "(empty)": "(vide)",
        "… and {count} more not listed.": "… et {count} autres, non listées.",
        "Skipped (suppressed or unsubscribed)": "Ignorées (adresses bloquées ou désabonnées)",
        "See the subscribers": "Voir les abonnés",
        "Import another file": "Importer un autre fichier",
        "Choose…": "Choisir…",
        "CSV file": "Fichier CSV",
        "A header row must name the email column. Any delimiter; UTF-8 with or without BOM. "
        "Name and language columns are read; other columns are kept as attributes.": (
            "Une ligne d'en-tête doit nommer la colonne des adresses e-mail. Tout séparateur "
            "convient ; UTF-8 avec ou sans BOM. Les colonnes de nom et de langue sont lues ; les "
            "autres sont conservées comme attributs."
        ),
        "They must confirm": "Ils doivent confirmer",
        "(double opt-in)": "(double consentement)",
        "They already confirmed elsewhere": "Ils ont déjà confirmé ailleurs",
        "Where they consented": "Où ils ont donné leur consentement",
        "(required when confirmed; kept on each subscription)": (
            "(obligatoire s'ils ont déjà confirmé ; conservé sur chaque abonnement)"
        ),
        "e.g. previous newsletter tool, export of March": (
            "p. ex. ancien outil d'envoi, export de mars"
        ),
        "Suppressed and unsubscribed addresses are never subscribed again by an import.": (
            "Une importation ne réabonne jamais les adresses bloquées ou désabonnées."
        ),
        "Import": "Importer",
        "unknown {kind} {value}": "{kind} inconnu : {value}",
        "Choose an action.": "Choisissez une action.",
        "Select at least one subscriber, or choose “all matching”.": (
            "Sélectionnez au moins un abonné, ou choisissez tous les résultats."
        ),
        "Tagged {people} “{tag}”.": "Étiquette « {tag} » ajoutée à {people}.",
        "Removed “{tag}” from {people}.": "Étiquette « {tag} » retirée de {people}.",
        "Deleted {people} and their personal data.": (
            "Suppression de {people} et de leurs données personnelles."
        ),
        "Choose the newsletter to import into.": "Choisissez la lettre dans laquelle importer.",
        "Choose a CSV file.": "Choisissez un fichier CSV.",
        "Say where these readers already consented (the reason is recorded).": (
            "Indiquez où ces lecteurs ont déjà donné leur consentement (le motif est enregistré)."
        ),
        "choose a newsletter to export": "choisissez une lettre à exporter",
        # Editor sessions (issue 9, item 6): login throttling, the Account page.
        "Too many failed attempts. Try again later.": (
            "Trop de tentatives échouées. Réessayez plus tard."
        ),
        "Account": "Compte",
        "Change password": "Changer de mot de passe",
        "Every other session of this account is logged out.": (
            "Toutes les autres sessions de ce compte sont déconnectées."
        ),
        "Current password": "Mot de passe actuel",
        "New password": "Nouveau mot de passe",
        "New password, again": "Nouveau mot de passe, à nouveau",
        "Sessions": "Sessions",
        "Logged in": "Connexion",
        "Last seen": "Dernière activité",
        "Network": "Réseau",
        "Browser": "Navigateur",
        "this browser": "ce navigateur",
        "Log out everywhere": "Se déconnecter partout",
        "The new passwords do not match.": "Les deux nouveaux mots de passe diffèrent.",
        "Password changed. Every other session is logged out.": (
            "Mot de passe changé. Toutes les autres sessions sont déconnectées."
        ),
        "The current password is wrong.": "Le mot de passe actuel est incorrect.",
        "The new password must have at least {n} characters.": (
            "Le nouveau mot de passe doit compter au moins {n} caractères."
        ),
        "The new password must have at most {n} characters.": (
            "Le nouveau mot de passe doit compter au plus {n} caractères."
        ),
        # Confirmation emails of imports and re-sends (issue 9, part "confirm").
        "Choose a newsletter to re-send its confirmation emails.": (
            "Choisissez une lettre pour en renvoyer les e-mails de confirmation."
        ),
        "No confirmation email queued: no pending reader could be mailed now.": (
            "Aucun e-mail de confirmation en attente d'envoi : "
            "aucun lecteur en attente ne peut être relancé maintenant."
        ),
        "Confirmation emails to {newsletter}:": "E-mails de confirmation pour {newsletter} :",
        "Re-send the confirmation email to pending readers…": (
            "Renvoyer l'e-mail de confirmation aux lecteurs en attente…"
        ),
        "Re-send the confirmation email (pending readers)": (
            "Renvoyer l'e-mail de confirmation (lecteurs en attente)"
        ),
        (
            "The workers send them at the relay's pace; "
            "the subscribers page shows how many have gone out."
        ): (
            "Les workers les envoient au rythme du relais ; la page des abonnés indique "
            "combien sont partis."
        ),
        (
            "Only readers still waiting to confirm {newsletter} get it. Confirmed, "
            "unsubscribed and suppressed readers get nothing, and nobody who was mailed "
            "in the last {minutes} minutes."
        ): (
            "Seuls les lecteurs qui n'ont pas encore confirmé {newsletter} le reçoivent. "
            "Les lecteurs confirmés, désabonnés ou bloqués ne reçoivent rien, ni personne "
            "qui a reçu un e-mail dans les {minutes} dernières minutes."
        ),
        "Re-send to {count}": "Renvoyer à {count}",
        # Part "text" (issue 9): names that cannot be kept.
        "This name holds a character that cannot be kept (a NUL). Please type it again.": (
            "Ce prénom contient un caractère qui ne peut pas être enregistré (un NUL). "
            "Merci de le saisir à nouveau."
        ),
        "This name holds a character that cannot be kept (a NUL). Nothing was changed.": (
            "Ce nom contient un caractère qui ne peut pas être enregistré (un NUL). "
            "Rien n'a été modifié."
        ),
        # Issue 9, no 5xx from input (no5xx).
        "A NUL character is not allowed in a web address or a form field.": (
            "Un caractère NUL n'est accepté ni dans une adresse web ni dans un champ de formulaire."
        ),
        # Issue 9, send loop (sendloop): failed deliveries, exact pause and cancel.
        "Paused: {sent} sent, {left} left.": "En pause : {sent} envoyés, {left} restants.",
        "Cancelled: {cancelled} will not go out, {sent} sent.": (
            "Annulée : {cancelled} ne partiront pas, {sent} envoyés."
        ),
        "Still being handed to the relay: {n}. The counts may still move by that many.": (
            "Encore en cours de remise au relais : {n}. "
            "Les chiffres peuvent encore bouger d'autant."
        ),
        "Failed deliveries": "Envois en échec",
        "The first {shown} of {count}; `hebdo editions failures {id}` lists them all.": (
            "Les {shown} premiers sur {count} ; `hebdo editions failures {id}` les liste tous."
        ),
        # Tokens by purpose (issue 9, part 5): the reader's data opens from a mailed link.
        "Email me my data": "M'envoyer mes données par e-mail",
        "To keep your data safe, we send the link to {email}; it works for 24 hours.": (
            "Pour protéger vos données, nous envoyons le lien à {email} ; "
            "il reste valable 24 heures."
        ),
        "We sent a link to {email}. It works for 24 hours.": (
            "Nous avons envoyé un lien à {email}. Il reste valable 24 heures."
        ),
        "We could not send the email just now. Try again in a few minutes.": (
            "Nous n'avons pas pu envoyer l'e-mail pour l'instant. Réessayez dans quelques minutes."
        ),
        "You asked several times already. Try again in an hour.": (
            "Vous avez déjà fait plusieurs demandes. Réessayez dans une heure."
        ),
        "Links to your data work for 24 hours. Ask for a new one from the preference "
        "link at the bottom of any of our emails.": (
            "Les liens vers vos données restent valables 24 heures. Demandez-en un nouveau "
            "depuis le lien « Gérer mes préférences » en bas de nos e-mails."
        ),
    }
)
# Counted messages (`ngettext`): the English singular and plural, then the French ones.
_FR_COUNTED: Mapping[tuple[str, str], tuple[str, str]] = MappingProxyType(
    {
        (
            "Resumed: {n} message to go.",
            "Resumed: {n} messages to go.",
        ): (
            "Reprise : {n} message restant.",
            "Reprise : {n} messages restants.",
        ),
        (
            "{n} message received by the local SMTP sink (newest first).",
            "{n} messages received by the local SMTP sink (newest first).",
        ): (
            "{n} message reçu par le collecteur SMTP local (du plus récent au plus ancien).",
            "{n} messages reçus par le collecteur SMTP local (du plus récent au plus ancien).",
        ),
        (
            "Edition {number} filled from the pasted draft: {n} news item.",
            "Edition {number} filled from the pasted draft: {n} news items.",
        ): (
            "Édition n° {number} remplie d'après le brouillon collé : {n} nouvelle.",
            "Édition n° {number} remplie d'après le brouillon collé : {n} nouvelles.",
        ),
        ("news item", "news items"): ("nouvelle", "nouvelles"),
        (
            "{n} related read",
            "{n} related reads",
        ): (
            "{n} lecture conseillée",
            "{n} lectures conseillées",
        ),
        ("{n} character", "{n} characters"): ("{n} caractère", "{n} caractères"),
        (
            "{n} line not placed",
            "{n} lines not placed",
        ): (
            "{n} ligne non placée",
            "{n} lignes non placées",
        ),
        ("{n} subscriber", "{n} subscribers"): ("{n} abonné", "{n} abonnés"),
        (
            "Ended {n} subscription.",
            "Ended {n} subscriptions.",
        ): (
            "{n} abonnement résilié.",
            "{n} abonnements résiliés.",
        ),
        (
            "Delete {n} subscriber?",
            "Delete {n} subscribers?",
        ): (
            "Supprimer {n} abonné ?",
            "Supprimer {n} abonnés ?",
        ),
        (
            "Unsubscribe {n} subscriber?",
            "Unsubscribe {n} subscribers?",
        ): (
            "Désabonner {n} abonné ?",
            "Désabonner {n} abonnés ?",
        ),
        ("matching", "matching"): ("résultat", "résultats"),
        ("all {n} matching", "all {n} matching"): ("{n} résultat", "les {n} résultats"),
        ("row read", "rows read"): ("ligne lue", "lignes lues"),
        ("{n} row read…", "{n} rows read…"): ("{n} ligne lue…", "{n} lignes lues…"),
        ("added", "added"): ("ajouté", "ajoutés"),
        ("merged", "merged"): ("fusionné", "fusionnés"),
        ("subscribed", "subscribed"): ("abonné", "abonnés"),
        ("confirmed", "confirmed"): ("confirmé", "confirmés"),
        ("skipped", "skipped"): ("ignoré", "ignorés"),
        ("rejected", "rejected"): ("rejeté", "rejetés"),
        # Editor sessions (issue 9, item 6): the wait after too many failed logins.
        (
            "Too many failed attempts. Try again in {n} minute.",
            "Too many failed attempts. Try again in {n} minutes.",
        ): (
            "Trop de tentatives échouées. Réessayez dans {n} minute.",
            "Trop de tentatives échouées. Réessayez dans {n} minutes.",
        ),
        # Confirmation emails of imports and re-sends (issue 9, part "confirm").
        (
            "{n} confirmation email queued.",
            "{n} confirmation emails queued.",
        ): (
            "{n} e-mail de confirmation en attente d'envoi.",
            "{n} e-mails de confirmation en attente d'envoi.",
        ),
        (
            "confirmation email queued",
            "confirmation emails queued",
        ): (
            "e-mail de confirmation en attente d'envoi",
            "e-mails de confirmation en attente d'envoi",
        ),
        ("{n} queued", "{n} queued"): ("{n} en attente", "{n} en attente"),
        ("{n} sent", "{n} sent"): ("{n} envoyé", "{n} envoyés"),
        ("{n} failed", "{n} failed"): ("{n} en échec", "{n} en échec"),
        ("{n} skipped", "{n} skipped"): ("{n} ignoré", "{n} ignorés"),
        (
            "Re-send the confirmation email to {n} reader?",
            "Re-send the confirmation email to {n} readers?",
        ): (
            "Renvoyer l'e-mail de confirmation à {n} lecteur ?",
            "Renvoyer l'e-mail de confirmation à {n} lecteurs ?",
        ),
    }
)
_CATALOGUES: Mapping[str, Mapping[str, str]] = MappingProxyType({"fr": _FR})
_COUNTED: Mapping[str, Mapping[tuple[str, str], tuple[str, str]]] = MappingProxyType(
    {"fr": _FR_COUNTED}
)


def catalogue(locale: str) -> Mapping[str, str]:
    """The translations of one locale (empty for English, the source language)."""
    return _CATALOGUES.get(locale, MappingProxyType({}))


def counted_catalogue(locale: str) -> Mapping[tuple[str, str], tuple[str, str]]:
    """The translations of one locale's counted messages: (singular, plural) both ways."""
    return _COUNTED.get(locale, MappingProxyType({}))


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


def babel_locale() -> str:
    """The request's locale as Babel names it, for dates and numbers."""
    return _BABEL_LOCALES[get_locale()]


def format_number(n: int) -> str:
    """`n` with the thousands separator of the request's locale (1,234 or 1 234)."""
    return format_decimal(n, locale=babel_locale())


def ngettext(singular: str, plural: str, n: int, **values: object) -> str:
    """The form of a counted message that `n` takes, with `{n}` filled in (formatted)."""
    locale = get_locale()
    # French puts 0 in the singular ("0 message"), English only 1.
    many = n > 1 if locale == "fr" else n != 1
    forms = counted_catalogue(locale).get((singular, plural), (singular, plural))
    return forms[many].format(n=format_number(n), **values)


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


Translate = Callable[..., str]


def translator(language: str) -> Translate:
    """A `_(message, **values)` speaking `language` whatever the request (reader pages)."""
    messages = catalogue(_primary(language) or DEFAULT_LOCALE)

    def translate(message: str, **values: object) -> str:
        text = messages.get(message, message)
        return text.format(**values) if values else text

    return translate


def init_app(app: Flask) -> None:
    """Expose `_`, `ngettext`, the locale and its formats to every template."""
    app.jinja_env.globals.update(
        _=gettext,
        ngettext=ngettext,
        get_locale=get_locale,
        format_number=format_number,
        status_label=status_label,
        switch_url=switch_url,
    )
