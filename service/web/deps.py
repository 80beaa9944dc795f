"""What views share: settings, a request-scoped session, the current editor, and the
permission each editor view needs (`requires`), checked by the domain's table of roles
(service/team/permissions.py) before the view runs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from functools import wraps
from typing import Any, TypeVar

from flask import (
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import newsletters
from service.config import Settings
from service.models import Edition, Editor, Newsletter, Subscription
from service.team import audit, editors, permissions
from service.team.permissions import Permission

F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    """The app's settings."""
    value: Settings = current_app.extensions["hebdo.settings"]
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


def who() -> audit.Who:
    """The logged-in editor as the audit log names them, with their client network."""
    editor = current_editor()
    assert editor is not None, "who() is for views that require an editor"
    return audit.Who.editor(editor, editors.client_network(request.remote_addr or ""))


# What a view acts on, read from its URL variables or its form: the ids of the
# newsletters concerned, or None when no newsletter is involved (the role decides alone).
Target = Callable[[Mapping[str, Any]], Collection[int] | None]


def edition_of(name: str = "edition_id") -> Target:
    """The newsletter of the edition named by the URL variable `name`."""

    def target(kwargs: Mapping[str, Any]) -> Collection[int] | None:
        found = db().get(Edition, kwargs[name])
        return None if found is None else {found.newsletter_id}  # the view answers 404

    return target


def newsletter_slug(name: str = "slug", *, form: bool = False) -> Target:
    """The newsletter whose slug is the URL variable `name` (or the form/query field)."""

    def target(kwargs: Mapping[str, Any]) -> Collection[int] | None:
        # The form first, then the query string: the order the views read them in (a
        # query naming another newsletter must not vouch for the form's).
        slug = (request.form.get(name) or request.args.get(name, "")) if form else kwargs[name]
        if not slug:
            return set()  # no newsletter named: only an editor given every one may
        try:
            return {newsletters.get_by_slug(db(), slug).id}
        except newsletters.UnknownNewsletter:
            return None  # the view answers 404 (or 400)

    return target


def subscriber_of(name: str = "subscriber_id") -> Target:
    """The newsletters the subscriber named by the URL variable `name` is on."""

    def target(kwargs: Mapping[str, Any]) -> Collection[int] | None:
        return subscribers_newsletters([kwargs[name]])

    return target


def subscribers_newsletters(ids: Collection[int]) -> set[int]:
    """The newsletters these subscribers are on (any status)."""
    if not ids:
        return set()
    query = select(Subscription.newsletter_id).where(Subscription.subscriber_id.in_(list(ids)))
    return set(db().scalars(query.distinct()))


def may(permission: Permission, newsletter_id: int | None = None) -> bool:
    """Whether the logged-in editor may do this (templates hide what they may not)."""
    editor = current_editor()
    return editor is not None and permissions.can(db(), editor, permission, newsletter_id)


def ensure(permission: Permission, newsletter_ids: Collection[int] | None = None) -> None:
    """Answer 403 (the request goes no further) unless the editor may do this: to at least
    one of these newsletters when ids are given; an empty collection needs an editor
    given every newsletter."""
    editor = current_editor()
    assert editor is not None
    session = db()
    if not permissions.can(session, editor, permission):
        _refuse(editor, permission, None)
    if newsletter_ids is None:
        return
    allowed = permissions.newsletters_of(session, editor)
    if allowed is None or permission is Permission.READ:
        return
    if not allowed.intersection(newsletter_ids):
        _refuse(editor, permission, sorted(newsletter_ids))


def ensure_subscribers(permission: Permission, ids: Collection[int]) -> None:
    """403 unless every one of these subscribers is on a newsletter given to the editor."""
    ensure(permission)
    editor = current_editor()
    assert editor is not None
    allowed = permissions.newsletters_of(db(), editor)
    if allowed is None or not ids:
        return
    reachable = db().scalars(
        select(Subscription.subscriber_id)
        .where(Subscription.subscriber_id.in_(list(ids)), Subscription.newsletter_id.in_(allowed))
        .distinct()
    )
    if len(set(reachable)) < len(set(ids)):
        _refuse(editor, permission, [])


def requires(permission: Permission, target: Target | None = None) -> Callable[[F], F]:
    """Declare the permission a view needs; anonymous visitors go to the login page, and
    an editor without it gets a 403 page saying what is needed, before the view runs.

    `target` names the object the view acts on (edition_of(), newsletter_slug(), …), so
    an editor given other newsletters is refused too.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_editor() is None:
                return redirect(url_for("auth.login", next=request.full_path))
            ensure(permission, None if target is None else target(kwargs))
            return view(*args, **kwargs)

        wrapper.hebdo_permission = permission  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse(editor: Editor, permission: Permission, newsletter_ids: list[int] | None) -> None:
    from service.web.i18n import _, role_label

    session = db()
    role = permissions.least_role(permission)
    names = [
        letter.name
        for letter in session.scalars(
            select(Newsletter)
            .where(Newsletter.id.in_(newsletter_ids or []))
            .order_by(Newsletter.id)
        )
    ]
    if names:
        needed = _(
            "This needs the role “{role}” on the newsletter {newsletter}; "
            "you are not given that newsletter.",
            role=role_label(role.value),
            newsletter=", ".join(names),
        )
    elif newsletter_ids is not None:
        needed = _(
            "This needs the role “{role}” on every newsletter; you are given only some.",
            role=role_label(role.value),
        )
    else:
        needed = _(
            "This needs the role “{role}”; your role is “{yours}”.",
            role=role_label(role.value),
            yours=role_label(editor.role.value),
        )
    session.rollback()  # whatever the request read, nothing it changes
    if request.is_json or request.accept_mimetypes.best == "application/json":
        abort(make_response(jsonify(ok=False, message=needed), 403))
    abort(make_response(render_template("web/forbidden.html", needed=needed), 403))
