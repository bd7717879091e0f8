"""Bar charts as SVG drawn on the server, for the usage page and the staff dashboard.

No script and no inline style (the Content-Security-Policy allows neither): bars and
text take classes that static/coppertone/charts.css colours. A chart is an image to
assistive technology, named by its <title> and summed up by its <desc>; each bar has
its own <title> (a tooltip on hover), and every page shows the same numbers in a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH = 560
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 66, 8, 26, 26  # room for the scale, the legend and the labels
MAX_LABELS = 8  # x labels shown at most; every bar still has its own title
MAX_BAR = 48  # a bar's widest, so that three providers do not fill the chart


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]
    css: str = "chart-a"  # chart-a, chart-b: the classes charts.css colours


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _shown_labels(count: int) -> set[int]:
    """Which x labels to print: all when they fit, else evenly spaced, the last among them."""
    if count <= MAX_LABELS:
        return set(range(count))
    step = -(-count // MAX_LABELS)
    return set(range(count - 1, -1, -step))  # from the newest back, evenly


def bar_chart(
    *,
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_label: Callable[[float], str] = _num,
    stacked: bool = True,
) -> SafeString:
    """Bars per label, one per series side by side, or stacked (`stacked=True`).

    `chart_id` must be unique on the page: the <title> and <desc> ids derive from it.
    """
    count = len(labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [
        sum(s.values[i] for s in series) if stacked else max(s.values[i] for s in series)
        for i in range(count)
    ]
    peak = max(totals, default=0) or 1.0
    slot = plot_w / max(count, 1)
    gap = min(slot * 0.2, 6.0)
    ids = {"id": chart_id, "w": WIDTH, "h": HEIGHT}
    parts: list[SafeString] = [
        format_html(
            '<svg class="chart" id="{id}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            'role="img" aria-labelledby="{id}-title {id}-desc" focusable="false">',
            **ids,
        ),
        format_html('<title id="{}-title">{}</title>', chart_id, title),
        format_html('<desc id="{}-desc">{}</desc>', chart_id, desc),
    ]
    # The scale: the baseline, half and the peak, with their values on the left.
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            format_html(
                '<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="chart-text" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                _num(y),
                _num(y),
                LEFT - 6,
                _num(y + 4),
                value_label(peak * fraction) if fraction else value_label(0),
            )
        )
    per_bar = 1 if stacked else max(len(series), 1)
    bar_w = min(max((slot - gap) / per_bar, 1.0), MAX_BAR)
    pad = (slot - gap - bar_w * per_bar) / 2  # centres bars narrower than their slot
    shown = _shown_labels(count)
    for i, label in enumerate(labels):
        x0 = LEFT + i * slot + gap / 2 + pad
        base: float = TOP + plot_h
        for j, line in enumerate(series):
            value = line.values[i]
            h = plot_h * value / peak
            x = x0 if stacked else x0 + j * bar_w
            y = base - h
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}: {} {}</title></rect>",
                    line.css,
                    _num(x),
                    _num(y),
                    _num(bar_w),
                    _num(h),
                    label,
                    line.name,
                    value_label(value),
                )
            )
            if stacked:
                base = y
        if i in shown:
            parts.append(
                format_html(
                    '<text class="chart-text" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _num(x0 + bar_w * per_bar / 2),
                    HEIGHT - 8,
                    label,
                )
            )
    if len(series) > 1:  # a legend, right-aligned above the plot
        right: float = WIDTH - RIGHT
        for line in reversed(series):
            right -= 8 + 7 * len(line.name)
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="6" width="10" height="10"/>'
                    '<text class="chart-text" x="{}" y="15">{}</text>',
                    line.css,
                    _num(right),
                    _num(right + 14),
                    line.name,
                )
            )
            right -= 22
    if not count:
        parts.append(
            format_html(
                '<text class="chart-text" x="{}" y="{}" text-anchor="middle">{}</text>',
                _num(LEFT + plot_w / 2),
                _num(TOP + plot_h / 2),
                "Nothing in this period.",
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))
