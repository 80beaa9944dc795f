"""Web doors: one blueprint per area; views translate HTTP to domain calls."""

from __future__ import annotations

from flask import Flask, Response, abort, request

from service.team.permissions import Permission
from service.web import (
    access,
    api,
    archive,
    auth,
    composer,
    dashboard,
    deps,
    hardening,
    i18n,
    newsletter_settings,
    outbox,
    preview,
    public,
    reader,
    results,
    sending_settings,
    subscribers,
    suppressions,
    team,
    team_access,
    webhooks,
)
from service.web.i18n import _


def register(app: Flask) -> None:
    """Attach every blueprint and the response hardening."""
    for module in (
        public,
        archive,
        auth,
        dashboard,
        outbox,
        reader,
        results,
        subscribers,
        preview,
        composer,
        team,
        team_access,
        webhooks,
        access,
        newsletter_settings,
        suppressions,
        sending_settings,
    ):
        app.register_blueprint(module.blueprint)
    api.init_app(app)
    i18n.init_app(app)
    app.jinja_env.globals.update(may=deps.may, Permission=Permission)
    app.before_request(_refuse_nul)
    hardening_headers = hardening.headers(app.extensions["hebdo.settings"].base_url)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in hardening_headers:
            response.headers.setdefault(name, value)
        return response

    app.teardown_appcontext(deps.close_db)


def _refuse_nul() -> None:
    # PostgreSQL refuses NUL in any text (a 500 from the driver) and no field of ours may
    # hold one: the address, the query string and the form are checked once, here.
    values = [request.path, *request.args.values(), *request.form.values()]
    for name, items in (*request.args.lists(), *request.form.lists()):
        values.append(name)
        values.extend(items)
    if any("\x00" in value for value in values):
        abort(400, _("A NUL character is not allowed in a web address or a form field."))
