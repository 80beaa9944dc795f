"""The open pixel, answered in front of Flask.

Every message of a send fetches its pixel, most within minutes of delivery (Apple's
image proxy fetches each one at once): it is the web app's busiest address, and it
needs nothing Flask gives (no session, template or database, only a token check and
a hand-over to the event buffer). Going through Flask's request machinery (routing,
request context, session interface, hooks) cost most of its time, so `Beacon`, a
WSGI layer in front of the Flask app, answers GET and HEAD of the open route itself
(bench/RESULTS.md, "Tracking endpoints under load").

There is one implementation of what a pixel request does: `record_open` (the token,
the event) and `CONTENT` with `service.web.hardening` (the answer's headers). The
Flask view `public.open_pixel` calls the same for what the fast path leaves to Flask
(a query string, a token of unusual characters, another method), so both answer the
same bytes. `Beacon` sits inside ProxyFix (service.app), so the client address it
records is the one a Flask view would read.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from service import tokens
from service.mail import links
from service.mail.mime import DELIVERY_PURPOSE, OPEN_PURPOSE
from service.models import EventKind
from service.tracking import events
from service.tracking.buffer import EventBuffer
from service.web import hardening

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# The pixel's own headers (the hardening ones come from service.web.hardening).
CONTENT: tuple[tuple[str, str], ...] = (
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(PIXEL))),
    ("Cache-Control", "no-store, max-age=0"),
)
_STATUS = {200: "200 OK", 404: "404 NOT FOUND"}  # as Werkzeug words them


def _route(rule: str) -> re.Pattern[str]:
    """The open route's rule as a pattern for the tokens `tokens.sign` makes (URL-safe)."""
    before, variable, after = rule.partition("<token>")
    if not variable or "<" in before + after:
        raise ValueError(f"the open route must have one <token> variable: {rule}")
    return re.compile(re.escape(before) + "([A-Za-z0-9_-]{1,200})" + re.escape(after))


OPEN = _route(links.ROUTES["open"])


def record_open(secret: str, buffer: EventBuffer, token: str, seen: events.Seen) -> int:
    """Hand an open to the event buffer; the status to answer (404 for a token not ours).

    No database access: the event is written with its batch (a delivery that no longer
    exists is dropped then). A forged token, or one of another purpose, records nothing;
    the answer is still the transparent GIF, so a mail client shows no broken image.
    """
    try:
        (delivery_id,) = tokens.verify_any(secret, (OPEN_PURPOSE, DELIVERY_PURPOSE), token, 1)
    except tokens.BadToken:
        return 404
    buffer.add(events.pending(EventKind.OPEN, delivery_id, seen))
    return 200


class Beacon:
    """WSGI: the open pixel answered here, every other request passed to `app` unchanged."""

    def __init__(
        self, app: WSGIApplication, *, secret: str, buffer: EventBuffer, base_url: str
    ) -> None:
        self.app = app
        self.secret = secret
        self.buffer = buffer  # the app's own (app.extensions["hebdo.events"])
        self.headers = CONTENT + hardening.headers(base_url)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if (method == "GET" or method == "HEAD") and not environ.get("QUERY_STRING"):
            found = OPEN.fullmatch(environ.get("PATH_INFO", ""))
            if found is not None:
                seen = events.Seen(
                    method=method,
                    user_agent=environ.get("HTTP_USER_AGENT", ""),
                    address=environ.get("REMOTE_ADDR"),
                )
                status = record_open(self.secret, self.buffer, found[1], seen)
                start_response(_STATUS[status], list(self.headers))
                return [] if method == "HEAD" else [PIXEL]
        return self.app(environ, start_response)
