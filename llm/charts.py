"""Bar charts as SVG drawn on the server: the one place the site's charts are drawn.

Two kinds share one frame: `bar_chart`, vertical bars per label along an axis (a day on
the usage page and the staff dashboard), and `labelled_bar_chart`, horizontal bars under
a long label (a model in an evaluation's report).

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

# bar_chart: vertical bars per label.
WIDTH = 560
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 66, 8, 26, 26  # room for the scale, the legend and the labels
MAX_LABELS = 8  # x labels shown at most; every bar still has its own title
MAX_BAR = 48  # a bar's widest, so that three providers do not fill the chart

# labelled_bar_chart: horizontal bars, grouped under their label.
LABELLED_WIDTH = 480
BAR_LEFT = 2
BAR_SPACE = 380  # the longest bar; the rest of the width is for its value
BAR_HEIGHT = 16
BAR_GAP = 3
LABEL_HEIGHT = 18  # each group's label sits above its bars, so long names fit
GROUP_GAP = 10
LEGEND_HEIGHT = 26
LABEL_CHARS = 60


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # one a label; None: no value (drawn as none)
    css: str = "chart-a"  # chart-a, chart-b, chart-c: the classes charts.css colours


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _value(value: float | None) -> float:
    return 0.0 if value is None else value


def _frame(
    chart_id: str, title: str, desc: str, width: int, height: int, parts: Sequence[SafeString]
) -> SafeString:
    """The <svg> around the parts, named by its <title> and summed up by its <desc>.

    `chart_id` must be unique on the page: the <title> and <desc> ids derive from it.
    """
    return format_html(
        '<svg class="chart" role="img" id="{id}" viewBox="0 0 {w} {h}" width="{w}" '
        'height="{h}" aria-labelledby="{id}-title {id}-desc" focusable="false">'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>{parts}</svg>',
        id=chart_id,
        w=width,
        h=height,
        title=title,
        desc=desc,
        parts=mark_safe("".join(parts)),  # each part was built with format_html: escaped
    )


def _bar(
    css: str, x: float, y: float, width: float, height: float, tip: str, *, rounded: bool = False
) -> SafeString:
    """One bar with its own <title>: the tooltip on hover, and its number in words."""
    return format_html(
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"{}><title>{}</title></rect>',
        css,
        _num(x),
        _num(y),
        _num(width),
        _num(height),
        mark_safe(' rx="2"') if rounded else "",
        tip,
    )


def _text(x: float, y: float, text: str, *, anchor: str = "", css: str = "") -> SafeString:
    return format_html(
        '<text class="chart-text{}" x="{}" y="{}"{}>{}</text>',
        f" {css}" if css else "",
        _num(x),
        _num(y),
        format_html(' text-anchor="{}"', anchor) if anchor else "",
        text,
    )


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
    """Vertical bars per label, one per series side by side, or stacked (`stacked=True`)."""
    count = len(labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [
        sum(_value(s.values[i]) for s in series)
        if stacked
        else max(_value(s.values[i]) for s in series)
        for i in range(count)
    ]
    peak = max(totals, default=0) or 1.0
    slot = plot_w / max(count, 1)
    gap = min(slot * 0.2, 6.0)
    parts: list[SafeString] = []
    # The scale: the baseline, half and the peak, with their values on the left.
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            format_html(
                '<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                LEFT,
                WIDTH - RIGHT,
                _num(y),
                _num(y),
            )
        )
        parts.append(
            _text(LEFT - 6, y + 4, value_label(peak * fraction if fraction else 0), anchor="end")
        )
    per_bar = 1 if stacked else max(len(series), 1)
    bar_w = min(max((slot - gap) / per_bar, 1.0), MAX_BAR)
    pad = (slot - gap - bar_w * per_bar) / 2  # centres bars narrower than their slot
    shown = _shown_labels(count)
    for i, label in enumerate(labels):
        x0 = LEFT + i * slot + gap / 2 + pad
        base: float = TOP + plot_h
        for j, line in enumerate(series):
            value = _value(line.values[i])
            h = plot_h * value / peak
            x = x0 if stacked else x0 + j * bar_w
            y = base - h
            tip = f"{label}: {line.name} {value_label(value)}"
            parts.append(_bar(line.css, x, y, bar_w, h, tip))
            if stacked:
                base = y
        if i in shown:
            parts.append(_text(x0 + bar_w * per_bar / 2, HEIGHT - 8, label, anchor="middle"))
    if len(series) > 1:  # a legend, right-aligned above the plot
        right: float = WIDTH - RIGHT
        for line in reversed(series):
            right -= 8 + 7 * len(line.name)
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="6" width="10" height="10"/>', line.css, _num(right)
                )
            )
            parts.append(_text(right + 14, 15, line.name))
            right -= 22
    if not count:
        parts.append(
            _text(LEFT + plot_w / 2, TOP + plot_h / 2, "Nothing in this period.", anchor="middle")
        )
    return _frame(chart_id, title, desc, WIDTH, HEIGHT, parts)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def labelled_bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_label: Callable[[float], str] = _num,
    top: float | None = None,
) -> SafeString:
    """Horizontal bars, one group a label (written above it) and one bar a series in each.

    `value_label` writes a value as the chart and its description say it ("120 ms");
    `top` is the value of the longest possible bar (the largest value when None). The
    description, every label's values in words, is written from the values.
    """
    values = [v for line in series for v in line.values if v is not None]
    scale = top if top else max(values, default=0.0) or 1.0
    legend = LEGEND_HEIGHT if len(series) > 1 else 0
    group = LABEL_HEIGHT + len(series) * BAR_HEIGHT + (len(series) - 1) * BAR_GAP
    height = legend + len(labels) * (group + GROUP_GAP)
    parts: list[SafeString] = []
    if legend:
        x = BAR_LEFT
        for line in series:
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="6" width="12" height="12" rx="2"/>', line.css, x
                )
            )
            parts.append(_text(x + 18, 16, line.name))
            x += 18 + 9 * len(line.name) + 24
    words: list[str] = []
    for index, label in enumerate(labels):
        y = legend + index * (group + GROUP_GAP)
        parts.append(_text(BAR_LEFT, y + 13, _short(label), css="chart-label"))
        said: list[str] = []
        for number, line in enumerate(series):
            value = line.values[index] if index < len(line.values) else None
            bar_y = y + LABEL_HEIGHT + number * (BAR_HEIGHT + BAR_GAP)
            text = "no value" if value is None else value_label(value)
            said.append(f"{line.name} {text}" if len(series) > 1 else text)
            length = 0.0 if value is None else max(0.0, min(value / scale, 1.0)) * BAR_SPACE
            if value is not None:
                tip = f"{label}: {line.name} {text}"
                parts.append(
                    _bar(line.css, BAR_LEFT, bar_y, max(length, 1.0), BAR_HEIGHT, tip, rounded=True)
                )
            parts.append(
                _text(BAR_LEFT + length + 6, bar_y + BAR_HEIGHT - 4, "–" if value is None else text)
            )
        words.append(f"{label}: {', '.join(said)}")
    desc = "; ".join(words) + "." if words else "No values yet."
    return _frame(chart_id, title, desc, LABELLED_WIDTH, height, parts)
