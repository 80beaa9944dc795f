"""The Flask application factory."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from service.config import Settings
from service.db import make_engine, session_factory
from service.tracking.buffer import EventBuffer
from service.web import register
from service.web.beacon import Beacon
from service.web.converters import BoundedIntConverter
from service.web.extensions import csrf


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app for these settings (read from the environment by default)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    # Before any route is added: every <int:…> answers 404 past the database's INTEGER.
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        TESTING=settings.testing,
    )
    app.extensions["hebdo.settings"] = settings
    app.extensions["hebdo.sessions"] = sessions = session_factory(
        make_engine(settings.database_url)
    )
    # Pixel, click and feedback events are written in batches, not in the request.
    app.extensions["hebdo.events"] = buffer = EventBuffer(
        sessions, interval=settings.event_flush_seconds
    )
    # The open pixel is answered in front of Flask (the same function and headers as its
    # view), and inside ProxyFix so that the client address is the one Flask would see.
    app.wsgi_app = Beacon(  # type: ignore[method-assign]
        app.wsgi_app, secret=settings.secret_key, buffer=buffer, base_url=settings.base_url
    )
    csrf.init_app(app)
    if settings.proxies:
        # Behind nginx or a load balancer the client address (per-IP limits, consent
        # records) and the scheme come from the proxy's headers, and only from them.
        n = settings.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    register(app)
    return app
