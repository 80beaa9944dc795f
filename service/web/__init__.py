"""Web doors: one blueprint per area; views translate HTTP to domain calls."""

from __future__ import annotations

from flask import Flask, Response

from service.web import (
    archive,
    auth,
    composer,
    dashboard,
    deps,
    i18n,
    outbox,
    preview,
    public,
    reader,
    subscribers,
)


def register(app: Flask) -> None:
    """Attach every blueprint and the response hardening."""
    for module in (
        public,
        archive,
        auth,
        dashboard,
        outbox,
        reader,
        subscribers,
        preview,
        composer,
    ):
        app.register_blueprint(module.blueprint)
    i18n.init_app(app)
    app.after_request(_security_headers)
    if app.extensions["hebdo.settings"].base_url.startswith("https://"):
        app.after_request(_strict_transport_security)
    app.teardown_appcontext(deps.close_db)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    return response


def _strict_transport_security(response: Response) -> Response:
    # Only when the site is served over https (BASE_URL): browsers then never try
    # plain http again, so a network attacker cannot strip TLS or read the cookie.
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response
