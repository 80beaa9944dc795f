"""Email address checks shared by signup, import and the CLI."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The address is not one we can mail; the message says why."""


def normalise(address: str) -> str:
    """Return the canonical form of an address (lower-case), or raise InvalidAddress."""
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    # Local parts are case-sensitive in theory, never in practice: merging
    # Alice@ and alice@ is what every reader expects.
    return result.normalized.lower()
