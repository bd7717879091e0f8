"""Bar charts drawn on the server as inline SVG: no chart library and no script, so they
pass the Content-Security-Policy and print as they show.

Colours come from CSS classes (`.chart .series-0`…), never a style attribute. Each chart
names itself in <title> and says its numbers in <desc>; the page has them in a table too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH = 480
BAR_LEFT = 2
BAR_SPACE = 380  # the longest bar; the rest of the width is for its value
BAR_HEIGHT = 16
BAR_GAP = 3
LABEL_HEIGHT = 18  # each group's label sits above its bars, so long names fit
GROUP_GAP = 10
LEGEND_HEIGHT = 26
LABEL_CHARS = 60

Series = tuple[str, Sequence[float | None]]  # (name, one value a label; None: no value)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    shown: Callable[[float], str],
    top: float | None = None,
) -> SafeString:
    """Horizontal bars, one group a label and one bar a series in each group.

    `shown` writes a value as the chart and its description say it ("120 ms");
    `top` is the value of the longest possible bar (the largest value when None).
    """
    values = [v for _name, row in series for v in row if v is not None]
    scale = top if top else max(values, default=0.0) or 1.0
    legend = LEGEND_HEIGHT if len(series) > 1 else 0
    group = LABEL_HEIGHT + len(series) * BAR_HEIGHT + (len(series) - 1) * BAR_GAP
    height = legend + len(labels) * (group + GROUP_GAP)
    parts: list[str] = []
    if legend:
        x = BAR_LEFT
        for number, (name, _row) in enumerate(series):
            parts.append(
                format_html(
                    '<rect class="series-{}" x="{}" y="6" width="12" height="12" rx="2"/>'
                    '<text class="legend" x="{}" y="16">{}</text>',
                    number,
                    x,
                    x + 18,
                    name,
                )
            )
            x += 18 + 9 * len(name) + 24
    words: list[str] = []
    for index, label in enumerate(labels):
        y = legend + index * (group + GROUP_GAP)
        parts.append(
            format_html(
                '<text class="label" x="{}" y="{}">{}</text>', BAR_LEFT, y + 13, _short(label)
            )
        )
        said: list[str] = []
        for number, (name, row) in enumerate(series):
            value = row[index] if index < len(row) else None
            bar_y = y + LABEL_HEIGHT + number * (BAR_HEIGHT + BAR_GAP)
            text = "no value" if value is None else shown(value)
            said.append(f"{name} {text}" if len(series) > 1 else text)
            length = 0.0 if value is None else max(0.0, min(value / scale, 1.0)) * BAR_SPACE
            if value is not None:
                parts.append(
                    format_html(
                        '<rect class="series-{}" x="{}" y="{}" width="{}" height="{}" rx="2"/>',
                        number,
                        BAR_LEFT,
                        bar_y,
                        f"{max(length, 1.0):.1f}",
                        BAR_HEIGHT,
                    )
                )
            parts.append(
                format_html(
                    '<text class="value" x="{}" y="{}">{}</text>',
                    f"{BAR_LEFT + length + 6:.1f}",
                    bar_y + BAR_HEIGHT - 4,
                    "–" if value is None else shown(value),
                )
            )
        words.append(f"{label}: {', '.join(said)}")
    return format_html(
        '<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" '
        'aria-labelledby="{}-title {}-desc">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        WIDTH,
        height,
        WIDTH,
        height,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        "; ".join(words) + "." if words else "No values yet.",
        mark_safe("".join(parts)),  # each part was built with format_html: escaped
    )
