"""A person's own usage page (/settings/usage/): tokens and cost this month and per day,
per provider and model, and what is left of the budget (llm/usage.py decides it all).
It reads the signed-in person alone: there is no way to name anyone else."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import dateformat, timezone
from django.views.decorators.http import require_GET

from accounts.models import User
from llm import limits, usage
from llm.charts import Series, bar_chart
from llm.templatetags.humanize_costs import usd


class MonthForm(forms.Form):
    month = forms.DateField(
        input_formats=["%Y-%m"],
        error_messages={"invalid": "Write the month as 2026-01 (year, then month)."},
    )

    def __init__(self, data: Any, *, today: dt.date) -> None:
        super().__init__(data)
        self.today = today

    def clean_month(self) -> dt.date:
        month: dt.date = self.cleaned_data["month"]
        if month > self.today:
            raise forms.ValidationError("That month has not started yet: here is this one.")
        return month


def _month(request: HttpRequest, today: dt.date) -> tuple[dt.date, str]:
    """The month asked for (?month=2026-01), else this one, and why not, in words."""
    if "month" not in request.GET:
        return limits.month_start(today), ""
    form = MonthForm(request.GET, today=today)
    if form.is_valid():
        return form.cleaned_data["month"], ""
    return limits.month_start(today), " ".join(str(e) for e in form.errors["month"])


def _charts(month: usage.MonthUsage) -> dict[str, Any]:
    labels = [str(d["day"].day) for d in month.days]
    name = dateformat.format(month.month, "F Y")
    total = month.total
    return {
        "cost_chart": bar_chart(
            chart_id="chart-cost",
            title=f"Cost per day, {name}",
            desc=f"{usd(total['cost'])} in {name} over {total['requests']} requests. "
            "The table below has every day.",
            labels=labels,
            series=[Series("Cost", [float(d["cost"]) for d in month.days])],
            value_label=lambda v: usd(round(v, 4)),
        ),
        "tokens_chart": bar_chart(
            chart_id="chart-tokens",
            title=f"Tokens per day, {name}",
            desc=f"{total['input_tokens']:,} tokens in and {total['output_tokens']:,} out "
            f"in {name}. The table below has every day.",
            labels=labels,
            series=[
                Series("Input", [d["input_tokens"] for d in month.days], "chart-a"),
                Series("Output", [d["output_tokens"] for d in month.days], "chart-b"),
            ],
            value_label=lambda v: f"{round(v):,}",
        ),
    }


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    today = timezone.localdate()
    start, problem = _month(request, today)
    month = usage.month_usage(user, start, today)
    earlier = limits.month_start(month.month - dt.timedelta(days=1))
    later = usage.resets_on(month.month)
    context = {
        "budget": usage.budget(user, today),
        "month": month,
        "is_this_month": month.month == limits.month_start(today),
        "problem": problem,
        "earlier": earlier,
        "later": later if later <= today else None,
        **_charts(month),
    }
    return render(request, "llm/settings/usage.html", context)
