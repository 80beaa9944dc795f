"""Preview an edition as the exact message a subscriber gets, and send it as a test.

The page shows the HTML part of the sample recipient's message (service.sending.testsend)
in frames at phone and desktop widths, its text part, its headers and its size
against Gmail's clipping limit. Rendering goes through premailer, which is slow,
so the rendering is kept in process per edition content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from service.config import Settings
from service.editions import store
from service.mail.render import RenderedEdition
from service.models import Edition
from service.sending import lifecycle, testsend
from service.team.permissions import Permission
from service.web.deps import db, edition_of, requires, settings
from service.web.i18n import _

blueprint = Blueprint("preview", __name__, url_prefix="/editions")

# The frames only show our own email: no script, no plugin, no navigation of the editor's page.
FRAME_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "img-src * data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
WIDTHS = (("phone", 375), ("desktop", 1200))


@dataclass(frozen=True)
class _Version:
    """Cache key of a rendering: the edition and a digest of everything it shows."""

    edition_id: int
    digest: str
    base_url: str
    templates_path: Path
    edition: Edition = field(compare=False, hash=False, repr=False)
    config: Settings = field(compare=False, hash=False, repr=False)


def _digest(edition: Edition) -> str:
    # Items can change without touching the edition row (and its updated_at), so the key
    # is the content itself, plus what the frozen copy and the newsletter add to it.
    newsletter = edition.newsletter
    payload = [
        store.to_data(edition),
        edition.number,
        edition.status.value,
        str(edition.rendered_at),
        [newsletter.slug, newsletter.name, newsletter.language, newsletter.postal_address],
        [newsletter.website_url, newsletter.sender_name],
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=32)
def _rendered(version: _Version) -> RenderedEdition:
    return testsend.rendering(version.edition, version.config)


def _sample(edition: Edition) -> testsend.SampleMessage:
    config = settings()
    version = _Version(
        edition.id, _digest(edition), config.base_url, config.email_templates_path, edition, config
    )
    return testsend.sample_message(edition, config, _rendered(version))


def _edition(edition_id: int) -> Edition:
    found = db().get(Edition, edition_id)
    if found is None:
        abort(404)
    return found


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _page(edition: Edition, *, addresses: str = "", errors: list[str] | None = None) -> str:
    sample = _sample(edition)
    html_size = sample.html_size
    if html_size >= testsend.GMAIL_CLIP_BYTES:
        size_state = "over"
    elif html_size > testsend.SIZE_WARNING_BYTES:
        size_state = "warn"
    else:
        size_state = "ok"
    return render_template(
        "web/preview.html",
        edition=edition,
        sample=sample,
        sample_recipient=f"{testsend.SAMPLE_NAME} <{testsend.SAMPLE_EMAIL}>",
        frozen=edition.rendered_html is not None and not lifecycle.is_editable(edition),
        size=_kb(sample.size),
        html_size=_kb(html_size),
        html_limit=_kb(testsend.GMAIL_CLIP_BYTES),
        html_ratio=min(html_size / testsend.GMAIL_CLIP_BYTES, 1.0),
        size_state=size_state,
        widths=WIDTHS,
        prefix=testsend.subject_prefix(edition.newsletter.language).strip(),
        max_addresses=testsend.MAX_ADDRESSES,
        addresses=addresses,
        errors=errors or [],
    )


@blueprint.get("/<int:edition_id>/preview")
@requires(Permission.READ)
def show(edition_id: int) -> str:
    """The preview page: both widths, the text part, headers, sizes, the test form."""
    return _page(_edition(edition_id))


@blueprint.get("/<int:edition_id>/preview/message.html")
@requires(Permission.READ)
def message_html(edition_id: int) -> Response:
    """The HTML part of the sample recipient's message, sandboxed."""
    response = Response(_sample(_edition(edition_id)).html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/<int:edition_id>/preview/message.eml")
@requires(Permission.READ)
def message_raw(edition_id: int) -> Response:
    """The sample recipient's message, byte for byte."""
    response = Response(_sample(_edition(edition_id)).envelope.data, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/<int:edition_id>/test-send")
@requires(Permission.COMPOSE, edition_of())
def test_send(edition_id: int) -> tuple[str, int] | BaseResponse:
    """Mail the edition, marked as a test, to the addresses typed in the form."""
    edition = _edition(edition_id)
    typed = request.form.get("addresses", "")
    try:
        report = testsend.send_test(db(), edition, [typed], settings())
    except testsend.BadTestAddresses as exc:
        if exc.invalid:
            message = _("Not a valid address: {addresses}", addresses=", ".join(exc.invalid))
        elif exc.count == 0:
            message = _("Give at least one address.")
        else:
            message = _("At most {count} addresses per test.", count=testsend.MAX_ADDRESSES)
        return _page(edition, addresses=typed, errors=[message]), 422
    db().rollback()  # a test send writes nothing; end the read transaction
    if report.sent:
        flash(_("Test sent to {addresses}.", addresses=", ".join(report.sent)), "ok")
    for address, reason in report.failed.items():
        flash(_("Not sent to {address}: {reason}", address=address, reason=reason), "bad")
    if report.failed:
        return _page(edition, addresses="\n".join(report.failed)), 502
    return redirect(url_for("preview.show", edition_id=edition_id))
