"""Every public URL, built from one table of routes.

The web blueprints register these same rule strings, so a link in a mail and the
page that answers it cannot drift apart. `url` fills a rule's variables; nothing
here checks a token: the page that receives it does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

ROUTES: Mapping[str, str] = MappingProxyType(
    {
        # In every edition, per reader (tracking and list management).
        "unsubscribe": "/u/<token>",
        "open": "/o/<token>.gif",
        "click": "/c/<token>/<int:index>",
        "feedback": "/f/<token>/<any(yes, no):answer>",
        "preferences": "/p/<token>",
        # In notices: signup confirmation and the links to a reader's data.
        "subscribe": "/n/<slug>/subscribe",
        "confirm": "/n/<slug>/confirm/<token>",
        "data_export": "/d/<token>/export.json",
        "data_erase": "/d/<token>/erase",
        # In the mail to editors: an invitation, a password reset.
        "welcome": "/welcome/<token>",
        "reset": "/reset/<token>",
        # The public archive.
        "archive": "/archive/<slug>/",
        "archive_edition": "/archive/<slug>/<int:number>",
        "archive_feed": "/archive/<slug>/feed.atom",
    }
)

_VARIABLE = re.compile(r"<(?:[^>:]*:)?(\w+)>")  # <token>, <int:index>, <any(yes, no):answer>
_FORMATS = {name: _VARIABLE.sub(r"{\1}", rule) for name, rule in ROUTES.items()}


def path(name: str, **values: object) -> str:
    """The path of route `name` with its variables filled in."""
    return _FORMATS[name].format(**values)


def url(base_url: str, name: str, **values: object) -> str:
    """The absolute URL of route `name` under the public base URL."""
    return base_url + _FORMATS[name].format(**values)


def list_archive(base_url: str, slug: str) -> str:
    """The List-Archive header's URL: the archive without its trailing slash (it redirects)."""
    return url(base_url, "archive", slug=slug).removesuffix("/")
