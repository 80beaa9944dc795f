"""The JSON API door (/api/v1): token auth, problems, endpoints and the OpenAPI document."""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import HTTPException

from service.web.api import openapi, views
from service.web.api.core import blueprint, http_problem
from service.web.extensions import csrf

__all__ = ["init_app", "openapi", "views"]


def init_app(app: Flask) -> None:
    """Register the API blueprint: no CSRF (no cookies are read), problems for its errors."""
    csrf.exempt(blueprint)
    app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, http_problem)
