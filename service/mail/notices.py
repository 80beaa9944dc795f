"""Notices: the transactional messages to one reader (signup confirmation, data links).

Rendered from templates/email/<notice>/ with the email templates' one Jinja
environment (service.mail.render), and built as a multipart/alternative message.
What a notice says and when it is sent is the audience's (service.audience.signup).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from service.addresses import for_sending
from service.mail.mime import mailbox
from service.mail.render import environment
from service.text import one_line


class Notice(enum.Enum):
    """The transactional messages of signup; values name the template folders."""

    CONFIRM = "confirm-subscription"
    ALREADY_SUBSCRIBED = "already-subscribed"
    DATA_EXPORT = "data-export"
    DATA_ERASE = "data-erase"
    EDITOR_INVITE = "editor-invite"  # to an editor, not a reader: service.team.access
    EDITOR_RESET = "editor-reset"


@dataclass(frozen=True)
class RenderedNotice:
    """A transactional message rendered from its template folder."""

    subject: str
    text: str
    html: str


def render(templates_path: Path, notice: Notice, context: dict[str, Any]) -> RenderedNotice:
    """Render subject, text and HTML of a notice (pure: data in, strings out)."""
    env = environment(templates_path)
    folder = notice.value
    subject = env.get_template(f"{folder}/subject.txt").render(context)
    return RenderedNotice(
        subject=" ".join(subject.split()),
        text=env.get_template(f"{folder}/body.txt").render(context).strip() + "\n",
        html=env.get_template(f"{folder}/body.html").render(context),
    )


@dataclass(frozen=True)
class Party:
    """A name and an address on a notice."""

    name: str
    email: str


def build(
    rendered: RenderedNotice,
    *,
    sender: Party,
    recipient: Party,
    reply_to: str | None,
    now: datetime,
) -> EmailMessage:
    """The notice as a multipart/alternative message."""
    sender_email = for_sending(sender.email)
    message = EmailMessage()
    # mime.mailbox writes the names as encoded words, so no name can break a header.
    message["From"] = mailbox(one_line(sender.name, limit=200), sender_email)
    message["To"] = mailbox(one_line(recipient.name, limit=200), for_sending(recipient.email))
    message["Subject"] = one_line(rendered.subject, limit=998)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("notice", domain=sender_email.rpartition("@")[2])
    if reply_to:
        message["Reply-To"] = for_sending(reply_to)
    # RFC 3834: no vacation auto-replies to a message no human typed.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def as_bytes(message: EmailMessage, recipient_email: str) -> bytes:
    """The message on the wire: a non-ASCII local part needs SMTPUTF8, headers in UTF-8."""
    utf8 = not for_sending(recipient_email).isascii()
    return message.as_bytes(policy=SMTPUTF8 if utf8 else SMTP)
