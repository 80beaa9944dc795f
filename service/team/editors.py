"""Editor accounts, their logins and their sessions.

Passwords are only ever stored hashed (werkzeug's scrypt); an invited account holds an
unusable hash (UNUSABLE_PREFIX) until its invitee chooses one (service.team.access).
Failed logins are counted per account and per client network in the shared rate
windows, so every web process sees the same counts:

- at most FAILURES_PER_ACCOUNT failures for one account (known or not) and
  FAILURES_PER_ADDRESS from one client network in any LOGIN_WINDOW_SECONDS
  (sliding, by the minute). Past that every attempt is refused without looking at
  the password, the right one too, until the oldest failure is 15 minutes old,
  or an admin lifts the lock (unlock(), `hebdo editors unlock`).
- A successful login forgives the account's earlier failures, not the address's.

A login opens a session recorded here: the cookie holds a random 256-bit token and
the table only its SHA-256, checked on every editor request by primary key.
Logout deletes it; a password change ends every other session of the editor; a
session unused for SESSION_IDLE or older than SESSION_LIFETIME is over.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from service import ratelimit
from service.addresses import InvalidAddress, normalise
from service.models import Editor, EditorRole, EditorSession, utcnow
from service.team import accounts, audit
from service.text import one_line

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte costs the server, not the guesser

LOGIN_WINDOW_SECONDS = 15 * 60
FAILURES_PER_ACCOUNT = 5  # a person mistyping; ~480 guesses a day at most on one account
FAILURES_PER_ADDRESS = 20  # an office behind one address; one guesser spraying many accounts
_BUCKET_SECONDS = 60
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # not for a table shown on a page

SESSION_IDLE = timedelta(days=7)
SESSION_LIFETIME = timedelta(days=30)
_TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is a hint; no write on every request


def create(
    session: Session,
    email: str,
    password: str,
    *,
    name: str = "",
    role: EditorRole = EditorRole.EDITOR,
    newsletters: Iterable[str] = (),
    who: audit.Who | None = None,
) -> Editor:
    """Create an editor account, given these newsletters (none: every newsletter).

    Raises InvalidAddress, PasswordRefused, or accounts.AccountError (address taken,
    unknown newsletter). Recorded in the audit log when `who` is given.
    """
    check_new_password(password)
    address = normalise(email)
    if session.scalar(select(Editor.id).where(Editor.email == address)) is not None:
        raise accounts.AccountError(f"an editor with the address {address} already exists")
    editor = Editor(
        email=address,
        name=one_line(name, limit=200),
        role=role,
        password_hash=generate_password_hash(password),
    )
    session.add(editor)
    session.flush()
    given = accounts.give_newsletters(session, editor, newsletters)
    if who is not None:
        audit.record(
            session,
            who,
            "editor.create",
            object_type="editor",
            object_id=editor.id,
            detail={"email": editor.email, "role": role.value, "newsletters": given},
        )
    return editor


def authenticate(session: Session, email: str, password: str) -> Editor | None:
    """The editor with these credentials, or None (same work whether the address exists);
    a disabled account is refused like a wrong password.

    No throttling here: the web login goes through log_in().
    """
    name = _login_name(email)
    # PostgreSQL refuses NUL in text: such a name matches no editor, so it is not asked.
    editor = None if "\x00" in name else session.scalar(select(Editor).where(Editor.email == name))
    if editor is None or len(password) > MAX_PASSWORD_LENGTH or not has_password(editor):
        check_password_hash(_DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])  # same timing
        return None
    if not check_password_hash(editor.password_hash, password) or editor.is_disabled:
        return None
    editor.last_login_at = utcnow()
    return editor


# --- logging in -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to: a session, a refusal, or a wait."""

    editor: Editor | None = None
    token: str = ""  # the new session's token, for the cookie (only its hash is stored)
    retry_after: int = 0  # > 0: too many failures; seconds before a try is heard again
    # The password was right but the editor has a second factor: no session yet, the
    # door asks for a code (service.team.totp.second_step) before one is opened.
    second_factor: bool = False


def log_in(
    session: Session,
    email: str,
    password: str,
    *,
    address: str,
    user_agent: str = "",
    now: float | None = None,
) -> LoginResult:
    """Check the credentials unless this account or client network is locked; open a session.

    The caller commits, whatever the result (failures must be counted).
    """
    moment = time.time() if now is None else now
    wait = login_wait(session, email, address, now=moment)
    if wait:
        return LoginResult(retry_after=wait)
    editor = authenticate(session, email, password)
    if editor is None:
        count_failure(session, email, address, now=moment)
        return LoginResult()
    if editor.totp_secret:
        return LoginResult(editor=editor, second_factor=True)
    ratelimit.forget(session, _account_key(email))
    token = open_session(session, editor, address=address, user_agent=user_agent)
    return LoginResult(editor=editor, token=token)


def login_wait(session: Session, email: str, address: str, *, now: float | None = None) -> int:
    """Seconds before this account or client network may try again; 0 if it may now.

    Two attempts on one account (or from one address) never check a secret at once,
    so parallel guesses cannot slip past the count (the lock holds until commit).
    """
    moment = time.time() if now is None else now
    limits = _limits(email, address)
    for key, _ in limits:
        ratelimit.serialise(session, key)
    return max(_wait(session, key, limit, moment) for key, limit in limits)


def count_failure(session: Session, email: str, address: str, *, now: float | None = None) -> None:
    """Count one failed attempt (a password, a second-factor code) on the account and network."""
    moment = time.time() if now is None else now
    for key, limit in _limits(email, address):
        ratelimit.hit(session, key, _BUCKET_SECONDS, limit, now=moment)


def forgive(session: Session, email: str) -> None:
    """Forget the account's failed attempts (a login that went through, a reset by mail)."""
    ratelimit.forget(session, _account_key(email))


def unlock(session: Session, email: str, *, address: str | None = None) -> Editor:
    """Lift the failed-login lock of this editor (and of a client address, if given).

    Raises LookupError when no editor has this address.
    """
    name = _login_name(email)
    editor = None if "\x00" in name else session.scalar(select(Editor).where(Editor.email == name))
    if editor is None:
        raise LookupError(f"no editor with the address {email.strip()}")
    ratelimit.forget(session, _account_key(email))
    if address is not None:
        ratelimit.forget(session, _address_key(address))
    return editor


def client_network(address: str) -> str:
    """Who is asking, as counted and recorded: an IPv4 address, or an IPv6 /64
    (one machine commonly holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _login_name(email: str) -> str:
    try:
        return normalise(email)
    except InvalidAddress:
        return email.strip().lower()


def _account_key(email: str) -> str:
    digest = hashlib.sha256(_login_name(email).encode("utf-8", "replace")).hexdigest()
    return f"login:account:{digest[:32]}"


def _address_key(address: str) -> str:
    return f"login:address:{client_network(address)}"


def _limits(email: str, address: str) -> list[tuple[str, int]]:
    return [
        (_account_key(email), FAILURES_PER_ACCOUNT),
        (_address_key(address), FAILURES_PER_ADDRESS),
    ]


def _wait(session: Session, key: str, limit: int, now: float) -> int:
    """Seconds until `key` has fewer than `limit` failures in the window; 0 if it has now."""
    windows = ratelimit.recent(session, key, LOGIN_WINDOW_SECONDS, now=now)
    excess = sum(count for _, count in windows) - limit + 1
    for start, count in windows:
        if excess <= 0:
            break
        excess -= count
        if excess <= 0:
            return max(1, start + LOGIN_WINDOW_SECONDS - int(now))
    return 0


# --- sessions ---------------------------------------------------------------------------


def open_session(
    session: Session, editor: Editor, *, address: str = "", user_agent: str = ""
) -> str:
    """Record a new session of this editor; the token for the cookie."""
    now = utcnow()
    session.execute(
        delete(EditorSession).where(EditorSession.editor_id == editor.id, _expired(now))
    )
    token = secrets.token_urlsafe(32)
    session.add(
        EditorSession(
            id=_digest(token),
            editor_id=editor.id,
            created_at=now,
            last_seen_at=now,
            client_network=client_network(address),
            user_agent=_CONTROL.sub(" ", user_agent[:300]),
        )
    )
    session.flush()
    return token


def session_editor(
    session: Session, token: object, *, now: datetime | None = None
) -> Editor | None:
    """The editor whose live session this token opens, or None (ended, expired, unknown)."""
    if not isinstance(token, str) or not 0 < len(token) <= 100:
        return None
    record = session.get(EditorSession, _digest(token))
    if record is None:
        return None
    now = now or utcnow()
    if record.last_seen_at <= now - SESSION_IDLE or record.created_at <= now - SESSION_LIFETIME:
        session.delete(record)
        return None
    editor = session.get(Editor, record.editor_id)
    if editor is None or editor.is_disabled:
        session.delete(record)
        return None
    if now - record.last_seen_at > _TOUCH_EVERY:
        record.last_seen_at = now
    return editor


def sessions_of(session: Session, editor: Editor) -> list[EditorSession]:
    """The editor's live sessions, most recently used first."""
    return list(
        session.scalars(
            select(EditorSession)
            .where(EditorSession.editor_id == editor.id, ~_expired(utcnow()))
            .order_by(EditorSession.last_seen_at.desc())
        )
    )


def is_current(record: EditorSession, token: str) -> bool:
    """Whether this session is the one the token opens."""
    return record.id == _digest(token)


def log_out(session: Session, token: object) -> None:
    """End the session this token opens (nothing if it is already over)."""
    if isinstance(token, str):
        session.execute(delete(EditorSession).where(EditorSession.id == _digest(token)))


def log_out_everywhere(session: Session, editor: Editor, *, keep: str | None = None) -> int:
    """End every session of this editor, but the one `keep` opens; how many ended."""
    query = delete(EditorSession).where(EditorSession.editor_id == editor.id)
    if keep is not None:
        query = query.where(EditorSession.id != _digest(keep))
    result = session.execute(query.execution_options(synchronize_session=False))
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)


class PasswordProblem(enum.Enum):
    WRONG_CURRENT = "the current password is wrong"
    LOCKED = "too many failed attempts on this account"
    TOO_SHORT = f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    TOO_LONG = f"the password must have at most {MAX_PASSWORD_LENGTH} characters"


class PasswordRefused(ValueError):
    """A password change or choice that cannot be accepted; .problem says why."""

    def __init__(self, problem: PasswordProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def change_password(
    session: Session, editor: Editor, current: str, new: str, *, keep: str | None = None
) -> int:
    """Set a new password (the current one must be given) and end every other session:
    whoever knew the old one is out. Returns how many sessions ended.

    A wrong current password counts as a failed login of the account, and a locked
    account cannot change it, so a stolen session cannot guess the password here.
    The caller commits, also when PasswordRefused is raised.
    """
    key, limit = _limits(editor.email, "")[0]
    ratelimit.serialise(session, key)
    moment = time.time()
    if _wait(session, key, limit, moment):
        raise PasswordRefused(PasswordProblem.LOCKED)
    if len(current) > MAX_PASSWORD_LENGTH or not check_password_hash(editor.password_hash, current):
        ratelimit.hit(session, key, _BUCKET_SECONDS, limit, now=moment)
        raise PasswordRefused(PasswordProblem.WRONG_CURRENT)
    check_new_password(new)
    editor.password_hash = generate_password_hash(new)
    return log_out_everywhere(session, editor, keep=keep)


def check_password(editor: Editor, password: str) -> bool:
    """Whether this is the editor's password (no throttling: callers count failures)."""
    if len(password) > MAX_PASSWORD_LENGTH or not has_password(editor):
        check_password_hash(_DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
        return False
    return check_password_hash(editor.password_hash, password)


def set_password(session: Session, editor: Editor, new: str) -> int:
    """Set a password chosen from a mailed link (the same rules as change_password) and end
    every session of the editor; how many ended. Raises PasswordRefused."""
    check_new_password(new)
    editor.password_hash = generate_password_hash(new)
    return log_out_everywhere(session, editor)


def has_password(editor: Editor) -> bool:
    """Whether the account has a usable password (an invited one has none until welcomed)."""
    return not editor.password_hash.startswith(UNUSABLE_PREFIX)


def unusable_password() -> str:
    """A password hash no password matches, unique per account (it keys the invite link)."""
    return UNUSABLE_PREFIX + secrets.token_hex(16)


def check_new_password(password: str) -> None:
    """Raise PasswordRefused unless the password may be chosen."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused(PasswordProblem.TOO_SHORT)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRefused(PasswordProblem.TOO_LONG)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _expired(now: datetime) -> ColumnElement[bool]:
    return or_(
        EditorSession.last_seen_at <= now - SESSION_IDLE,
        EditorSession.created_at <= now - SESSION_LIFETIME,
    )


_DUMMY_HASH = generate_password_hash("not-a-real-password")
UNUSABLE_PREFIX = "!"  # no werkzeug hash starts so; check_password_hash refuses every password
