"""Sending settings: what Hebdo sends with (relays, DKIM, bounce domain), read from the
environment and never shown in full; admins test a relay and generate a DKIM key."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service import newsletters
from service.mail import dkim_keys, relays
from service.numbers import BadNumber, parse_int
from service.team import audit
from service.team.permissions import Permission
from service.tools import preflight
from service.web.deps import current_editor, db, may, requires, settings, who
from service.web.i18n import _

blueprint = Blueprint("sending_settings", __name__, url_prefix="/settings/sending")


def _sender_domains() -> list[str]:
    return [n.sender_email.rpartition("@")[2].lower() for n in newsletters.list_all(db())]


def _page(
    generated: relays.GeneratedKey | None = None,
    form: dict[str, str] | None = None,
    problem: str = "",
) -> str:
    config = settings()
    senders = _sender_domains()
    dkim_findings, _setups = preflight.check_dkim(config, senders)
    return render_template(
        "web/sending_settings.html",
        relays=relays.relay_views(config),
        settings=config,
        dkim_findings=dkim_findings,
        base_url_findings=preflight.check_base_url(config),
        bounce_findings=preflight.check_bounce_domain(config, senders),
        generated=generated,
        form=form or {"selector": "", "domain": config.dkim_domain or "", "algorithm": "rsa"},
        problem=problem,
        may_change=may(Permission.MANAGE),
    )


@blueprint.get("/")
@requires(Permission.READ)
def index() -> str:
    """The relays, DKIM and the bounce domain, as configured."""
    return _page()


@blueprint.post("/relays/test")
@requires(Permission.MANAGE)
def test_relay() -> Response:
    """Send a short message through one relay to the editor's own address."""
    editor = current_editor()
    assert editor is not None
    try:
        index = parse_int(request.form.get("relay", ""), minimum=0, maximum=1000)
        result = relays.test_relay(
            settings(),
            index,
            editor.email,
            subject=_("Hebdo: test of an SMTP relay"),
            body=_("This message tests one SMTP relay of Hebdo. Nothing else to do."),
        )
    except (BadNumber, relays.UnknownRelay):
        flash(_("Choose a relay from the list."), "error")
        return redirect(url_for("sending_settings.index"))
    audit.record(
        db(),
        who(),
        "settings.relay_test",
        object_type="relay",
        object_id=result.relay,
        detail={"accepted": result.accepted, "reply": result.reply[:500]},
    )
    db().commit()
    if result.accepted:
        flash(
            _(
                "{relay} accepted a test message to {email}.",
                relay=result.relay,
                email=editor.email,
            ),
            "ok",
        )
    else:
        flash(
            _("{relay} refused the test message: {reply}", relay=result.relay, reply=result.reply),
            "error",
        )
    return redirect(url_for("sending_settings.index"))


@blueprint.post("/dkim/generate")
@requires(Permission.MANAGE)
def generate_key() -> str | tuple[str, int]:
    """Write a new DKIM key into the instance folder and show its TXT record."""
    form = {key: request.form.get(key, "")[:300] for key in ("selector", "domain", "algorithm")}
    ed25519_key = form["algorithm"] == "ed25519"
    try:
        generated = relays.generate_key(
            settings(), form["selector"], form["domain"], ed25519_key=ed25519_key
        )
    except dkim_keys.BadKeyRequest:
        return _page(
            form=form, problem=_("Give a selector (letters, digits, -) and a domain.")
        ), 422
    except FileExistsError:
        return _page(form=form, problem=_("A key with this selector and domain exists.")), 422
    except OSError:
        return _page(form=form, problem=_("The key file cannot be written.")), 422
    audit.record(
        db(),
        who(),
        "settings.dkim_generate",
        object_type="dkim_key",
        object_id=generated.record.name,
        detail={"path": str(generated.path), "algorithm": generated.record.algorithm},
    )
    db().commit()
    return _page(generated=generated, form=form)
