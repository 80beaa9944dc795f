"""What views share: settings, a request-scoped session, the current editor."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import Editor
from service.team import editors
from service.tracking.buffer import EventBuffer

F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    """The app's settings."""
    value: Settings = current_app.extensions["hebdo.settings"]
    return value


def event_buffer() -> EventBuffer:
    """Where public-link events wait to be written in a batch."""
    value: EventBuffer = current_app.extensions["hebdo.events"]
    return value


def db() -> Session:
    """The request's database session (closed at teardown)."""
    if "db" not in g:
        factory: sessionmaker[Session] = current_app.extensions["hebdo.sessions"]
        g.db = factory()
    return g.db  # type: ignore[no-any-return]


def close_db(_: BaseException | None = None) -> None:
    """Close the request's session, if one was opened."""
    db_session = g.pop("db", None)
    if db_session is not None:
        db_session.close()


def current_editor() -> Editor | None:
    """The logged-in editor, if any: the cookie's session must still be live on the server."""
    if "editor" not in g:
        token = session.get("sid")
        found = None
        if token is not None:
            found = editors.session_editor(db(), token)
            db().commit()  # the session's last use, or its end if it expired
            if found is None:
                session.pop("sid", None)  # ended elsewhere: the cookie forgets it too
        g.editor = found
    return g.editor  # type: ignore[no-any-return]


def editor_required(view: F) -> F:
    """Send anonymous visitors to the login page (with a safe local next=)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_editor() is None:
            return redirect(url_for("auth.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
