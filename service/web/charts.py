"""Charts as SVG drawn on the server (pygal): they show without JavaScript and print.

Each chart on a page has its numbers in a table beside it, so these SVGs are
pictures of that table: labelled as images, not read out point by point.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

# pygal appends an import hook for its map plugins (pygal.maps.*) that has no
# find_spec: every later failed import anywhere in the process then raises an
# ImportWarning (pygments' optional `import ctags` is one). We draw no maps.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#999",
    colors=("#1a4f8b", "#d9822b", "#7a7a7a", "#3f8f5a"),
    font_family="system-ui, -apple-system, 'Segoe UI', sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=13,
    title_font_size=15,
    value_font_size=12,
)
# pygal adds a <script> for its optional tooltips; without it the SVG is a plain picture.
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def bar(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | int | None]]],
    *,
    horizontal: bool = False,
    line: bool = False,
    percent: bool = False,
) -> Markup:
    """A bar (or line) chart of these series over these labels, as inline SVG."""
    kind = pygal.Line if line else pygal.HorizontalBar if horizontal else pygal.Bar
    chart = kind(
        title=title,
        x_labels=list(labels),
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        width=760,
        height=max(300, 34 * len(labels) + 120) if horizontal else 320,
        legend_at_bottom=True,
        print_values=False,
        truncate_label=40,
        x_label_rotation=0 if horizontal or len(labels) < 8 else 30,
        value_formatter=(lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:g}"),
        min_scale=1,
        max_scale=6,
        show_minor_y_labels=False,
    )
    for name, values in series:
        chart.add(name, list(values))
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    label = re.sub(r'[<>&"]', "", title)
    # The table beside it carries the numbers; the picture is named for what it shows.
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
    return Markup(svg)  # noqa: S704 - drawn by pygal from numbers and escaped labels
