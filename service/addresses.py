"""Email address checks shared by signup, import and the CLI.

Addresses are stored in the form email_validator calls normalised: an
internationalised domain in Unicode (what the reader typed and sees), the
local part lower-cased. `for_sending` gives the form that goes on the wire:
the domain in ASCII (IDNA, "xn--…"), so only a non-ASCII local part still
needs a relay that speaks SMTPUTF8.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The address is not one we can mail; the message says why."""


def normalise(address: str) -> str:
    """Return the canonical form of an address (lower-case), or raise InvalidAddress."""
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    except (ValueError, TypeError) as exc:  # e.g. a lone surrogate from undecodable bytes
        raise InvalidAddress(f"the address cannot be read: {exc}") from exc
    # Local parts are case-sensitive in theory, never in practice: merging
    # Alice@ and alice@ is what every reader expects.
    return result.normalized.lower()


def for_sending(address: str) -> str:
    """The address as it goes into SMTP and headers: its domain in ASCII (IDNA).

    Costs nothing for an ASCII address; raises InvalidAddress for one that
    email_validator refuses.
    """
    if address.isascii():
        return address
    return _ascii_domain(address)


@lru_cache(maxsize=4096)
def _ascii_domain(address: str) -> str:
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidAddress(f"the address cannot be read: {exc}") from exc
    return f"{result.local_part}@{result.ascii_domain}"
