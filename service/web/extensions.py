"""Flask extensions shared by the app factory and the blueprints (no import cycle)."""

from __future__ import annotations

from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
