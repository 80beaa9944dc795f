"""Signed tokens for every public link: compact, HMAC-SHA256, purpose-bound.

A token packs a few non-negative integers (ids, an issue time) and a truncated
HMAC over them and its purpose, so a token minted to unsubscribe can never open
someone's data export, and nobody can forge or guess one. They are URL-safe.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from collections.abc import Iterable
from functools import lru_cache

_MAC_BYTES = 12  # 96 bits: forging needs ~2^95 guesses against a rate-limited endpoint


class BadToken(ValueError):
    """The token is malformed, forged, of another purpose, or expired."""


class ExpiredToken(BadToken):
    """A genuine token from sign_expiring, older than its maximum age."""

    def __init__(self, message: str, values: tuple[int, ...]) -> None:
        super().__init__(message)
        self.values = values  # genuine, so a page may still speak the reader's language


@lru_cache(maxsize=64)
def _keyed(secret: str, purpose: str) -> hmac.HMAC:
    # Keyed once per purpose and copied per token: a message carries several tokens.
    key = hashlib.sha256(f"hebdo:{purpose}:{secret}".encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(payload)
    return mac.digest()[:_MAC_BYTES]


def sign(secret: str, purpose: str, *values: int) -> str:
    """Mint a token for the given purpose carrying these integers."""
    payload = struct.pack(f">{len(values)}Q", *values)
    raw = payload + _mac(secret, purpose, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify(secret: str, purpose: str, token: str, count: int) -> tuple[int, ...]:
    """Return the integers a valid token carries, or raise BadToken."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise BadToken("malformed token") from exc
    if len(raw) != 8 * count + _MAC_BYTES:
        raise BadToken("malformed token")
    payload, mac = raw[: 8 * count], raw[8 * count :]
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        raise BadToken("invalid signature")
    return struct.unpack(f">{count}Q", payload)


def verify_any(secret: str, purposes: Iterable[str], token: str, count: int) -> tuple[int, ...]:
    """Verify a token that may carry any of these purposes (e.g. a new one and its legacy)."""
    error = BadToken("no purpose given")
    for purpose in purposes:
        try:
            return verify(secret, purpose, token, count)
        except BadToken as exc:
            error = exc
    raise error


def sign_expiring(secret: str, purpose: str, *values: int) -> str:
    """Mint a token that also carries its issue time, for links that expire."""
    return sign(secret, purpose, *values, int(time.time()))


def verify_expiring(
    secret: str, purpose: str, token: str, count: int, max_age_seconds: int
) -> tuple[int, ...]:
    """Verify a token from sign_expiring and reject it once older than max_age."""
    *values, issued = verify(secret, purpose, token, count + 1)
    if time.time() - issued > max_age_seconds:
        raise ExpiredToken("expired token", tuple(values))
    return tuple(values)
