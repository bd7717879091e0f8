"""The staff usage dashboard (/admin/usage/) and its CSV (/admin/usage/export.csv): spend,
tokens and speed across everyone, filtered by days, provider and person (llm/staff_usage.py
decides both), and provider health over the last 15 minutes (llm/health.py, as
/api/v1/health/providers)."""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from llm import staff_usage
from llm.charts import Series, bar_chart
from llm.health import provider_health
from llm.templatetags.humanize_costs import usd


def _filters(request: HttpRequest) -> staff_usage.UsageFilter:
    return staff_usage.UsageFilter(request.GET or None, today=timezone.localdate())


def _short(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


def _charts(report: staff_usage.Report) -> dict[str, Any]:
    days = report.days
    labels = [_short(d["day"]) for d in days]
    period = f"{_short(report.filters.since)} {report.filters.since.year} to "
    period += f"{_short(report.filters.until)} {report.filters.until.year}"
    peak = max(days, key=lambda d: d["cost"], default=None)
    spend_desc = f"Spend per day from {period}: {usd(report.total['cost'])} in all"
    if peak is not None and peak["cost"]:
        spend_desc += f", most on {_short(peak['day'])} ({usd(peak['cost'])})"
    tokens_in = sum(d["input_tokens"] for d in days)
    tokens_out = sum(d["output_tokens"] for d in days)
    speed = [row for row in report.speed if row["p50_ms"] is not None]
    return {
        "spend_chart": bar_chart(
            chart_id="chart-spend",
            title="Spend per day",
            desc=spend_desc + ". The table below has every day.",
            labels=labels,
            series=[Series("Cost", [float(d["cost"]) for d in days])],
            value_label=lambda v: usd(round(v, 4)),
        ),
        "tokens_chart": bar_chart(
            chart_id="chart-tokens",
            title="Tokens per day",
            desc=f"Tokens per day from {period}: {tokens_in:,} in and {tokens_out:,} out. "
            "The table below has every day.",
            labels=labels,
            series=[
                Series("Input", [d["input_tokens"] for d in days], "chart-a"),
                Series("Output", [d["output_tokens"] for d in days], "chart-b"),
            ],
            value_label=lambda v: f"{round(v):,}",
        ),
        "latency_chart": bar_chart(
            chart_id="chart-latency",
            title="Latency per provider, p50 and p95",
            desc="; ".join(
                f"{r['label']}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms" for r in speed
            )
            or "No replies with a latency in this period.",
            labels=[r["label"] for r in speed],
            series=[
                Series("p50", [r["p50_ms"] for r in speed], "chart-a"),
                Series("p95", [r["p95_ms"] for r in speed], "chart-b"),
            ],
            value_label=lambda v: f"{v:,.0f} ms",
            stacked=False,
        ),
    }


@staff_member_required
@require_GET
def usage_dashboard(request: HttpRequest) -> HttpResponse:
    form = _filters(request)
    filters = form.filters()
    report = staff_usage.report(filters)
    for row in report.rows:  # each person's name narrows the dashboard to them
        row["href"] = "?" + urlencode(filters.query(user=row["username"]))
    context = {
        "title": "Usage",
        "form": form,
        "filters": filters,
        "report": report,
        "periods": [
            (days, "?" + urlencode(filters.query(days=str(days))), filters.days == days
             and filters.until == form.today)
            for days in staff_usage.PERIODS
        ],
        "columns": staff_usage.COLUMNS,
        "export_query": urlencode(filters.query()),
        "latency_sample": staff_usage.LATENCY_SAMPLE,
        "health": provider_health(timezone.now()),
        **_charts(report),
    }  # fmt: skip
    return render(request, "admin/usage_dashboard.html", context)


@staff_member_required
@require_GET
def usage_export(request: HttpRequest) -> HttpResponse:
    """The dashboard's per person, provider and model table as CSV, for the same filters."""
    form = _filters(request)
    if form.data and not form.is_valid():
        words = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return HttpResponse(words, status=400, content_type="text/plain; charset=utf-8")
    filters = form.filters()
    name = f"usage-{filters.since:%Y%m%d}-{filters.until:%Y%m%d}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([title for _key, title in staff_usage.COLUMNS])
    for row in staff_usage.table(filters):
        writer.writerow(
            [staff_usage.csv_cell(key, row[key]) for key, _title in staff_usage.COLUMNS]
        )
    return response
