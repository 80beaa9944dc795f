"""Results pages: what happened to an edition, and a newsletter's audience over time.

The figures come from service.tracking.results (the same as the CLI's); this door
only lays them out, draws the charts (service.web.charts) and serves the CSV.
"""

from __future__ import annotations

from babel import Locale
from babel.numbers import format_percent
from flask import Blueprint, Response, abort, render_template
from markupsafe import Markup

from service import newsletters
from service.models import Edition
from service.team.permissions import Permission
from service.tracking import results
from service.web import charts
from service.web.deps import db, requires
from service.web.i18n import _, babel_locale

blueprint = Blueprint("results", __name__)
PREVIOUS = 4  # earlier editions shown beside this one


def _percent(rate: float | None) -> str:
    """A rate with one decimal, spelled the locale's way (50.0% or 50,0 %)."""
    if rate is None:
        return "\u2013"  # an en dash: no rate without answers or deliveries
    locale = Locale.parse(babel_locale())
    pattern = locale.percent_formats[None].pattern.replace("#,##0", "#,##0.0", 1)
    return format_percent(rate, pattern, locale=locale)


def _edition(edition_id: int) -> Edition:
    found = db().get(Edition, edition_id)
    if found is None:
        abort(404)
    return found


def _item_label(item: results.ItemFigures) -> str:
    return f"{item.position}. {item.title}" if item.position else _("Other links")


@blueprint.get("/editions/<int:edition_id>/results")
@requires(Permission.READ)
def edition(edition_id: int) -> str:
    """The results page of one edition, with the previous editions beside it."""
    found = _edition(edition_id)
    figures = results.edition_results(db(), edition_id)
    history = [figures, *results.previous(db(), edition_id, PREVIOUS)]
    groups = [*figures.items, *([figures.other_links] if figures.other_links else [])]
    chart_days: Markup | None = None
    chart_items: Markup | None = None
    if figures.tracked:
        chart_days = charts.bar(
            _("Opens and clicks over the first 7 days"),
            [_("Day {n}", n=day.day) for day in figures.days],
            [
                (_("Readers who opened"), [day.opens for day in figures.days]),
                (_("Clicks by people"), [day.clicks for day in figures.days]),
            ],
        )
        chart_items = charts.bar(
            _("Clicks per news item"),
            # Numbers under the bars; the table below names each item and its links.
            [
                _("Item {n}", n=item.position) if item.position else _("Other links")
                for item in groups
            ],
            [
                (_("Readers who clicked"), [item.clicks.human_unique for item in groups]),
                (_("Machine clicks"), [item.clicks.machine for item in groups]),
            ],
        )
    oldest_first = list(reversed(history))
    chart_history = charts.bar(
        _("This edition and the previous ones"),
        [_("No. {number}", number=r.number) for r in oldest_first],
        [
            (_("Open rate"), [r.open_rate if r.tracked else None for r in oldest_first]),
            (_("Click rate"), [r.click_rate if r.tracked else None for r in oldest_first]),
        ],
        percent=True,
    )
    return render_template(
        "web/results.html",
        edition=found,
        r=figures,
        groups=groups,
        history=history,
        item_label=_item_label,
        percent=_percent,
        chart_days=chart_days,
        chart_items=chart_items,
        chart_history=chart_history,
    )


@blueprint.get("/editions/<int:edition_id>/results.csv")
@requires(Permission.READ)
def edition_csv(edition_id: int) -> Response:
    """The per-item and per-link figures as CSV."""
    found = _edition(edition_id)
    body = results.items_csv(results.edition_results(db(), edition_id))
    response = Response(body, mimetype="text/csv")
    name = f"{found.newsletter.slug}-{found.number}-results.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@blueprint.get("/newsletters/<slug>/audience")
@requires(Permission.READ)
def audience(slug: str) -> str:
    """Subscribers over time: readers, new, confirmed, unsubscribed and bounced per week."""
    try:
        newsletter = newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        abort(404)
    weeks = results.subscribers_by_week(db(), newsletter.id)
    labels = [week.start.strftime("%d/%m") for week in weeks]
    chart_readers = charts.bar(
        _("Confirmed readers at the end of each week"),
        labels,
        [(_("Readers"), [week.readers for week in weeks])],
        line=True,
    )
    chart_moves = charts.bar(
        _("Arrivals and departures per week"),
        labels,
        [
            (_("New"), [week.new for week in weeks]),
            (_("Confirmed"), [week.confirmed for week in weeks]),
            (_("Unsubscribed"), [week.unsubscribed for week in weeks]),
            (_("Bounced"), [week.bounced for week in weeks]),
        ],
    )
    return render_template(
        "web/audience.html",
        newsletter=newsletter,
        weeks=weeks,
        chart_readers=chart_readers,
        chart_moves=chart_moves,
    )
