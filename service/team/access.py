"""Getting into an account: invitations, password resets by mail, the first admin of a site.

Links are tokens of service.tokens with a purpose of their own (an invitation never
resets a password, a reset never welcomes) carrying the editor's id and a fingerprint of
the account's password hash, so a link dies as soon as the password it was sent for
changes: used once, or overtaken by a newer password. An invited account has no
usable password (editors.unusable_password, random per account) until the invitee
chooses one from the link.

Password reset requests answer the same whether the address has an account or not;
they are counted per address and per client network in the shared rate windows, and
only an existing, enabled account gets a message.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import ratelimit, tokens, translations
from service.addresses import InvalidAddress, normalise
from service.config import Settings
from service.mail import links, notices
from service.mail.notices import Notice
from service.mail.transport import DeliveryError, Transport
from service.models import Editor, EditorRole, Newsletter, utcnow
from service.team import audit, editors
from service.team.audit import Who
from service.text import one_line, person_name

log = logging.getLogger(__name__)

INVITE_PURPOSE = "editor-invite"
RESET_PURPOSE = "editor-reset"
INVITE_MAX_AGE = timedelta(hours=72)
RESET_MAX_AGE = timedelta(hours=1)

RESET_WINDOW_SECONDS = 3600
RESETS_PER_ADDRESS = 3  # messages one mailbox can be sent in an hour, asked by anyone
RESETS_PER_NETWORK = 10  # requests from one client network in an hour, whatever the address

SITE_NAME = "Hebdo"


class LinkInvalid(LookupError):
    """The link is forged, of another purpose, already used, or its account is gone."""


class LinkExpired(LinkInvalid):
    """A genuine link that is too old."""


class AlreadyEditor(ValueError):
    """An account with this address exists (and is not a pending invitation)."""


class AlreadySetUp(RuntimeError):
    """The site has an editor already: the first-admin form is closed."""


# --- links ------------------------------------------------------------------------------


def _fingerprint(editor: Editor) -> int:
    # 64 bits of the password hash: the token stays short and dies when the hash changes.
    digest = hashlib.sha256(editor.password_hash.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def link_token(secret: str, purpose: str, editor: Editor) -> str:
    """A link for this editor, of this purpose, bound to their current password hash."""
    return tokens.sign_expiring(secret, purpose, editor.id, _fingerprint(editor))


def open_link(session: Session, secret: str, purpose: str, token: str) -> Editor:
    """The editor a live link of this purpose is for; raise LinkInvalid or LinkExpired."""
    max_age = INVITE_MAX_AGE if purpose == INVITE_PURPOSE else RESET_MAX_AGE
    if not isinstance(token, str) or len(token) > 200:
        raise LinkInvalid("malformed link")
    try:
        editor_id, fingerprint = tokens.verify_expiring(
            secret, purpose, token, 2, int(max_age.total_seconds())
        )
    except tokens.ExpiredToken as exc:
        raise LinkExpired("expired link") from exc
    except tokens.BadToken as exc:
        raise LinkInvalid(str(exc)) from exc
    editor = session.get(Editor, editor_id) if editor_id < 2**31 else None
    if editor is None or editor.is_disabled or fingerprint != _fingerprint(editor):
        raise LinkInvalid("used or unknown link")
    if purpose == INVITE_PURPOSE and editors.has_password(editor):
        raise LinkInvalid("already welcomed")
    return editor


# --- invitations ------------------------------------------------------------------------


def invite(
    session: Session,
    who: Who,
    email: str,
    role: EditorRole,
    *,
    name: str = "",
) -> Editor:
    """Create an account with no usable password for the invitee (or renew a pending one).

    Raises InvalidAddress, UnusableText (the name) or AlreadyEditor. The caller sends
    the invitation (send_invitation) after committing.
    """
    address = normalise(email)
    clean_name = person_name(name) if name.strip() else ""
    editor = session.scalar(select(Editor).where(Editor.email == address))
    if editor is not None and (editors.has_password(editor) or editor.is_disabled):
        raise AlreadyEditor(address)
    if editor is None:
        editor = Editor(email=address, name=clean_name, role=role)
        session.add(editor)
    else:
        editor.name, editor.role = clean_name or editor.name, role
    # A new unusable hash each time: an earlier invitation link to this address dies.
    editor.password_hash = editors.unusable_password()
    session.flush()
    audit.record(
        session,
        who,
        "editor.invite",
        object_type="editor",
        object_id=editor.id,
        detail={"email": editor.email, "role": role.value},
    )
    return editor


def welcome(
    session: Session, secret: str, token: str, password: str, *, client_network: str = ""
) -> Editor:
    """Set the invitee's first password from their link; the link is then dead.

    Raises LinkInvalid, LinkExpired or editors.PasswordRefused.
    """
    editor = open_link(session, secret, INVITE_PURPOSE, token)
    editors.set_password(session, editor, password)
    audit.record(
        session,
        Who.editor(editor, client_network),
        "editor.welcome",
        object_type="editor",
        object_id=editor.id,
    )
    return editor


# --- password reset ---------------------------------------------------------------------


@dataclass(frozen=True)
class ResetRequest:
    """What a reset request came to: the editor to mail (None: nobody), or a refusal."""

    editor: Editor | None = None
    limited: bool = False


def request_reset(
    session: Session, email: str, *, address: str, now: float | None = None
) -> ResetRequest:
    """Count a reset request; the editor to mail a link to, if the address has an account.

    The caller commits (the count too) and answers the same whatever came back.
    """
    moment = time.time() if now is None else now
    name = _login_name(email)
    digest = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:32]
    network = editors.client_network(address)
    keys = (
        (f"reset:account:{digest}", RESETS_PER_ADDRESS),
        (f"reset:address:{network}", RESETS_PER_NETWORK),
    )
    allowed = [
        ratelimit.hit(session, key, RESET_WINDOW_SECONDS, limit, now=moment) for key, limit in keys
    ]
    if not all(allowed):
        return ResetRequest(limited=True)
    editor = None if "\x00" in name else session.scalar(select(Editor).where(Editor.email == name))
    if editor is None or editor.is_disabled:
        return ResetRequest()
    audit.record(
        session,
        Who.editor(editor, network),
        "editor.reset.request",
        object_type="editor",
        object_id=editor.id,
    )
    return ResetRequest(editor=editor)


def reset_password(
    session: Session, secret: str, token: str, password: str, *, client_network: str = ""
) -> Editor:
    """Set a new password from a reset link and end every session of the editor.

    The mail proves who asks, so the account's failed-login lock is lifted too.
    Raises LinkInvalid, LinkExpired or editors.PasswordRefused.
    """
    editor = open_link(session, secret, RESET_PURPOSE, token)
    ended = editors.set_password(session, editor, password)
    editors.forgive(session, editor.email)
    audit.record(
        session,
        Who.editor(editor, client_network),
        "editor.reset",
        object_type="editor",
        object_id=editor.id,
        detail={"sessions_ended": ended},
    )
    return editor


# --- the first admin --------------------------------------------------------------------


def needs_first_admin(session: Session) -> bool:
    """Whether the site has no editor at all (the first admin may be created from loopback)."""
    return not session.scalar(select(func.count()).select_from(Editor))


def create_first_admin(
    session: Session, email: str, password: str, *, name: str = "", client_network: str = ""
) -> Editor:
    """Create the first admin of an empty site; raise AlreadySetUp once any editor exists.

    Raises InvalidAddress, UnusableText or editors.PasswordRefused for bad input.
    """
    ratelimit.serialise(session, "team:first-admin")  # two forms posted at once make one admin
    if not needs_first_admin(session):
        raise AlreadySetUp("the site has an editor")
    clean_name = person_name(name) if name.strip() else ""
    editor = editors.create(session, email, password, name=clean_name, role=EditorRole.ADMIN)
    audit.record(
        session,
        Who.editor(editor, client_network),
        "editor.create",
        object_type="editor",
        object_id=editor.id,
        detail={"email": editor.email, "role": "admin", "first_admin": True},
    )
    return editor


# --- the messages -----------------------------------------------------------------------


def sender(session: Session, settings: Settings) -> notices.Party:
    """Who mail to editors comes from: the oldest newsletter's sender, else the bounce domain."""
    newsletter = session.scalar(select(Newsletter).order_by(Newsletter.id).limit(1))
    if newsletter is not None:
        return notices.Party(SITE_NAME, newsletter.sender_email)
    return notices.Party(SITE_NAME, f"hebdo@{settings.bounce_domain}")


def message_context(
    notice: Notice,
    editor: Editor,
    settings: Settings,
    *,
    lang: str,
    inviter: str = "",
) -> dict[str, Any]:
    """The template context of an invitation or reset message to this editor."""
    language = translations.language_of(lang) or translations.SOURCE_LANGUAGE
    _ = translations.translator(language)
    purpose = INVITE_PURPOSE if notice is Notice.EDITOR_INVITE else RESET_PURPOSE
    token = link_token(settings.secret_key, purpose, editor)
    route = "welcome" if notice is Notice.EDITOR_INVITE else "reset"
    return {
        "lang": language,
        "_": _,
        "ngettext": _.ngettext,
        "newsletter": {"name": SITE_NAME, "sender_name": SITE_NAME, "postal_address": ""},
        "editor": {"name": editor.name, "email": editor.email, "role": editor.role.value},
        "inviter": one_line(inviter, limit=200),
        "urls": {"action": links.url(settings.base_url, route, token=token)},
        "invite_hours": int(INVITE_MAX_AGE.total_seconds() // 3600),
        "reset_minutes": int(RESET_MAX_AGE.total_seconds() // 60),
    }


def build_message(
    session: Session,
    notice: Notice,
    editor: Editor,
    settings: Settings,
    *,
    lang: str,
    inviter: str = "",
) -> EmailMessage:
    """The invitation or reset message to this editor, as multipart/alternative."""
    now = utcnow()
    rendered = notices.render(
        settings.email_templates_path,
        notice,
        message_context(notice, editor, settings, lang=lang, inviter=inviter),
    )
    return notices.build(
        rendered,
        sender=sender(session, settings),
        recipient=notices.Party(editor.name, editor.email),
        reply_to=None,
        now=now,
    )


def send_message(
    session: Session,
    notice: Notice,
    editor: Editor,
    settings: Settings,
    transport: Transport,
    *,
    lang: str,
    inviter: str = "",
) -> bool:
    """Mail an invitation or a reset link now; whether the relay took it (failures are logged).

    Sent after the caller's commit: a failure loses nothing, the link can be asked again.
    """
    try:
        message = build_message(session, notice, editor, settings, lang=lang, inviter=inviter)
        transport.send(
            sender(session, settings).email,
            editor.email,
            notices.as_bytes(message, editor.email),
        )
    except (DeliveryError, ValueError) as exc:
        log.warning("%s for editor %s not sent: %s", notice.value, editor.id, exc)
        return False
    return True


def _login_name(email: str) -> str:
    try:
        return normalise(email)
    except InvalidAddress:
        return email.strip().lower()
