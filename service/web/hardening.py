"""The headers every answer of the web app carries, in one place.

Flask's pages get them from an after_request hook (service.web.register) and the
open pixel's fast path (service.web.beacon) sends the same tuple, so the two
cannot drift apart.
"""

from __future__ import annotations

SECURITY: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "SAMEORIGIN"),
)
# Only when the site is served over https (BASE_URL): browsers then never try plain
# http again, so a network attacker cannot strip TLS or read the cookie.
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def headers(base_url: str) -> tuple[tuple[str, str], ...]:
    """The hardening headers of a site served at this public base URL."""
    return SECURITY + ((HSTS,) if base_url.startswith("https://") else ())
