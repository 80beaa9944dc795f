"""The optional second factor of a login: TOTP codes (RFC 6238, pyotp) and recovery codes.

Turning it on takes the password and a code from the app (so the editor's app holds the
secret before the login asks for it); ten recovery codes are then shown once and kept
only as SHA-256, each accepted once. A code is one more secret to guess, so a wrong one
counts as a failed login of the account and network (editors.count_failure), and a code
already used in its 30-second step is refused (kept a few minutes in the rate windows).
Turning it off takes the password.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time

import pyotp
from sqlalchemy.orm import Session

from service import ratelimit
from service.models import Editor
from service.team import audit, editors
from service.team.audit import Who

ISSUER = "Hebdo"
RECOVERY_CODES = 10
_RECOVERY_BYTES = 5  # 10 hex digits, 40 bits: each is also rate-limited like a password
_MAX_CODE = 64  # anything longer is no code of ours
_STEP_MEMORY = 180  # seconds a used code's time step is remembered (valid_window 1: ±30 s)


class CodeProblem(enum.Enum):
    WRONG_PASSWORD = "the password is wrong"  # noqa: S105 (a message, not a password)
    WRONG_CODE = "the code is wrong"
    LOCKED = "too many failed attempts on this account"


class CodeRefused(ValueError):
    """A second-factor change that cannot be made; .problem says why."""

    def __init__(self, problem: CodeProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def new_secret() -> str:
    """A fresh base32 secret (160 bits) for an authenticator app."""
    return pyotp.random_base32(32)


def is_secret(value: str) -> bool:
    """Whether `value` looks like a secret of new_secret() (the form carries it back)."""
    return len(value) == 32 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in value)


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads (typed in, or from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def _clean(code: str) -> str:
    return "".join(c for c in code[:_MAX_CODE] if c.isalnum()).lower()


def _recovery_digest(code: str) -> str:
    return hashlib.sha256(_clean(code).encode("ascii", "replace")).hexdigest()


def _code_fits(session: Session, editor: Editor, secret: str, code: str) -> bool:
    """Whether `code` is the app's current code for `secret` and was not used already."""
    digits = _clean(code)
    if len(digits) != 6 or not digits.isdigit():
        return False
    totp = pyotp.TOTP(secret)
    now = time.time()
    for offset in (0, -1, 1):
        moment = now + offset * totp.interval
        if secrets.compare_digest(totp.at(moment), digits):
            step = int(moment // totp.interval)
            # The first use of a step's code takes the one slot; a replay finds it taken.
            # Counted at the step's own time, so every use of it lands in the same window.
            key = f"totp:used:{editor.id}:{step}"
            return ratelimit.hit(session, key, _STEP_MEMORY, 1, now=step * totp.interval)
    return False


def turn_on(
    session: Session,
    editor: Editor,
    who: Who,
    *,
    password: str,
    secret: str,
    code: str,
    address: str = "",
) -> list[str]:
    """Turn the second factor on with this secret; the recovery codes, to show once.

    Raises CodeRefused (a wrong password or code counts as a failed login). The caller
    commits, also when CodeRefused is raised.
    """
    _check_password(session, editor, password, address)
    if not is_secret(secret) or not _code_fits(session, editor, secret, code):
        editors.count_failure(session, editor.email, address)
        raise CodeRefused(CodeProblem.WRONG_CODE)
    editor.totp_secret = secret
    codes = new_recovery_codes(session, editor)
    audit.record(session, who, "editor.totp.on", object_type="editor", object_id=editor.id)
    return codes


def new_recovery_codes(session: Session, editor: Editor) -> list[str]:
    """Replace the editor's recovery codes; the new ones (only their SHA-256 is kept)."""
    codes = [secrets.token_hex(_RECOVERY_BYTES) for _ in range(RECOVERY_CODES)]
    editor.totp_recovery = " ".join(_recovery_digest(code) for code in codes)
    session.flush()
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def turn_off(
    session: Session, editor: Editor, who: Who, *, password: str, address: str = ""
) -> None:
    """Turn the second factor off (the password is asked); raise CodeRefused.

    `address` is the client's, for the failed-login count. The caller commits."""
    _check_password(session, editor, password, address)
    editor.totp_secret = ""
    editor.totp_recovery = ""
    session.flush()
    audit.record(session, who, "editor.totp.off", object_type="editor", object_id=editor.id)


def recovery_left(editor: Editor) -> int:
    """How many recovery codes the editor has not used."""
    return len(editor.totp_recovery.split())


class Step(enum.Enum):
    """How a second step ended."""

    CODE = "code"
    RECOVERY = "recovery"
    WRONG = "wrong"
    LOCKED = "locked"


def second_step(
    session: Session,
    editor: Editor,
    code: str,
    *,
    address: str,
    now: float | None = None,
) -> tuple[Step, int]:
    """Check the code asked after the password: (how it ended, seconds to wait if locked).

    A recovery code is used up. A wrong code counts as a failed login; a right one
    forgives the account's failures. Each outcome is one audit row (`login`,
    `login.recovery_code`, `login.failed`). The caller opens the session and commits.
    """
    wait = editors.login_wait(session, editor.email, address, now=now)
    if wait:
        return Step.LOCKED, wait
    who = Who.editor(editor, editors.client_network(address))
    if editor.totp_secret and _code_fits(session, editor, editor.totp_secret, code):
        editors.forgive(session, editor.email)
        audit.record(
            session,
            who,
            "login",
            object_type="editor",
            object_id=editor.id,
            detail={"second_factor": "totp"},
        )
        return Step.CODE, 0
    digest = _recovery_digest(code)
    left = editor.totp_recovery.split()
    if editor.totp_secret and len(_clean(code)) == 2 * _RECOVERY_BYTES and digest in left:
        left.remove(digest)
        editor.totp_recovery = " ".join(left)
        editors.forgive(session, editor.email)
        audit.record(
            session,
            who,
            "login.recovery_code",  # the login's one row, as a recovery code is worth a look
            object_type="editor",
            object_id=editor.id,
            detail={"left": len(left)},
        )
        return Step.RECOVERY, 0
    editors.count_failure(session, editor.email, address, now=now)
    audit.record(
        session,
        who,
        "login.failed",
        object_type="editor",
        object_id=editor.id,
        detail={"second_factor": "wrong code"},
    )
    return Step.WRONG, 0


def _check_password(session: Session, editor: Editor, password: str, address: str) -> None:
    if editors.login_wait(session, editor.email, address):
        raise CodeRefused(CodeProblem.LOCKED)
    if not editors.check_password(editor, password):
        editors.count_failure(session, editor.email, address)
        raise CodeRefused(CodeProblem.WRONG_PASSWORD)
