"""The staff usage dashboard (/admin/usage/): spend, tokens and speed across everyone, and
provider health over the last 15 minutes (llm/health.py, as /api/v1/health/providers)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Avg, Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from llm.health import provider_health
from llm.models import DailyUsage, Message

PERIODS = (1, 7, 30, 90)
TOTALS = {
    "requests": Sum("requests"),
    "errors": Sum("errors"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost"),
}


@staff_member_required
def usage_dashboard(request: HttpRequest) -> HttpResponse:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    days = days if days in PERIODS else 30
    since = timezone.localdate() - timedelta(days=days - 1)
    usage = DailyUsage.objects.filter(day__gte=since)

    totals = usage.aggregate(**TOTALS)
    per_day: list[dict[str, Any]] = [
        dict(row) for row in usage.values("day").annotate(**TOTALS).order_by("day")
    ]
    peak = max((row["cost"] or Decimal(0) for row in per_day), default=Decimal(0))
    replies = Message.objects.filter(
        role=Message.Role.ASSISTANT, created_at__date__gte=since
    ).exclude(status=Message.Status.STREAMING)
    context = {
        "title": "Usage",
        "days": days,
        "periods": PERIODS,
        "totals": totals,
        "per_day": [
            {**row, "bar": int(100 * (row["cost"] or 0) / peak) if peak else 0} for row in per_day
        ],
        "per_model": usage.values("provider", "model").annotate(**TOTALS).order_by("-cost")[:20],
        "per_user": usage.values("user__username").annotate(**TOTALS).order_by("-cost")[:20],
        "speed": replies.values("provider")
        .annotate(
            replies=Count("id"),
            ttft=Avg("ttft_ms"),
            latency=Avg("latency_ms"),
            failed=Count("id", filter=Q(status=Message.Status.ERROR)),
        )
        .order_by("-replies"),
        "health": provider_health(timezone.now()),
    }
    return render(request, "admin/usage_dashboard.html", context)
