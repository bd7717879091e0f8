"""Usage across everyone, for the staff dashboard (/admin/usage/) and its CSV export:
the filters (one form decides what is valid, for both) and what they select.

Spend, tokens, requests and failures come from the DailyUsage roll-ups: a few thousand
rows where the messages are millions, so the page stays fast however long the hub has
run. Latency has no roll-up; its percentiles are taken over the newest `LATENCY_SAMPLE`
ended replies that match the filters, read newest first along the reply_created index
(llm/models.py), so that the read stops there.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from llm.models import DailyUsage, Message
from llm.providers import registry
from llm.usage import SUMS, per_day, totals

PERIODS = (1, 7, 30, 90)  # the quick links, in days up to today
DEFAULT_DAYS = 30
MAX_DAYS = 366
LATENCY_SAMPLE = 10_000

# The dashboard's table, one row per person, provider and model; the CSV has the same rows.
COLUMNS = (
    ("username", "User"),
    ("provider", "Provider"),
    ("model", "Model"),
    ("requests", "Requests"),
    ("errors", "Failed"),
    ("input_tokens", "Input tokens"),
    ("output_tokens", "Output tokens"),
    ("cost", "Cost (USD)"),
)


def _provider_choices() -> list[tuple[str, str]]:
    return [("", "Every provider"), *registry.choices()]


class UsageFilter(forms.Form):
    """Which days, provider and person. Empty dates: the last 30 days up to today;
    `days` (a quick link) sets both ends."""

    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    provider = forms.ChoiceField(required=False, choices=_provider_choices)
    user = forms.CharField(required=False, max_length=150, label="User name")
    days = forms.TypedChoiceField(
        required=False, choices=[(str(d), str(d)) for d in PERIODS], coerce=int, empty_value=None,
        widget=forms.HiddenInput,
    )  # fmt: skip

    def __init__(self, data: Any = None, *, today: dt.date) -> None:
        super().__init__(data)
        self.today = today

    def clean_user(self) -> User | None:
        name = self.cleaned_data.get("user", "").strip()
        if not name:
            return None
        found = User.objects.filter(username=name).first()
        if found is None:
            raise forms.ValidationError(
                f"No one has the user name “{name}”: check the spelling, or leave it empty."
            )
        return found

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        days = data.get("days")
        if days:
            data["until"] = self.today
            data["since"] = self.today - dt.timedelta(days=days - 1)
        until = data.get("until") or self.today
        since = data.get("since") or until - dt.timedelta(days=DEFAULT_DAYS - 1)
        if since > until:
            raise forms.ValidationError(
                "The first day comes after the last one: swap them, or leave one empty."
            )
        if (until - since).days + 1 > MAX_DAYS:
            raise forms.ValidationError(
                f"Pick at most {MAX_DAYS} days at once; the CSV of each year can be joined."
            )
        data["since"], data["until"] = since, until
        return data

    def filters(self) -> Filters:
        """The valid choice, or the default period when the form has errors."""
        if self.is_valid():
            data = self.cleaned_data
            return Filters(data["since"], data["until"], data.get("provider") or "", data["user"])
        return Filters(self.today - dt.timedelta(days=DEFAULT_DAYS - 1), self.today, "", None)


@dataclass(frozen=True, slots=True)
class Filters:
    since: dt.date
    until: dt.date
    provider: str
    user: User | None

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def query(self, **extra: str) -> dict[str, str]:
        """As GET parameters, for links that keep them (a period link, the CSV)."""
        out = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        if self.provider:
            out["provider"] = self.provider
        if self.user is not None:
            out["user"] = self.user.get_username()
        out.update(extra)
        return out

    def usage(self) -> QuerySet[DailyUsage]:
        rows = DailyUsage.objects.filter(day__gte=self.since, day__lte=self.until)
        if self.provider:
            rows = rows.filter(provider=self.provider)
        if self.user is not None:
            rows = rows.filter(user=self.user)
        return rows

    def replies(self) -> QuerySet[Message]:
        """Ended replies that reached a provider, created on the chosen local days."""
        start = timezone.make_aware(dt.datetime.combine(self.since, dt.time.min))
        end = timezone.make_aware(
            dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time.min)
        )
        replies = Message.objects.filter(
            role=Message.Role.ASSISTANT, created_at__gte=start, created_at__lt=end, cached=False
        ).exclude(status=Message.Status.STREAMING)
        if self.provider:
            replies = replies.filter(provider=self.provider)
        if self.user is not None:
            replies = replies.filter(conversation__user=self.user)
        return replies


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the value that a share `q` of the others do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(q * len(ordered)), 1) - 1], 1)


def label(kind: str) -> str:
    return registry.spec(kind).label if kind in registry.PROVIDERS else kind


def table(filters: Filters) -> list[dict[str, Any]]:
    """THE table: per person, provider and model, the biggest spend first."""
    grouped = (
        filters.usage()
        .values("user__username", "provider", "model")
        .annotate(**SUMS)
        .order_by("-cost", "user__username", "provider", "model")
    )
    return [
        {
            "username": r["user__username"],
            "provider": r["provider"],
            "model": r["model"],
            **totals(r),
        }
        for r in grouped
    ]


def add_up(rows: list[dict[str, Any]], key: str | None = None) -> dict[Any, dict[str, Any]]:
    """Rows of sums added up per `key` (None: all of them under None), in Python: the
    table's rows already hold every sum the page needs, so no second scan of the roll-ups."""
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        into = out.setdefault(row[key] if key else None, totals({}))
        for name in SUMS:
            into[name] += row[name]
    return out


def speed(filters: Filters, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per provider: requests and failures (from the table's roll-up rows, exact), and
    latency percentiles over the newest replies."""
    counts = add_up(rows, "provider")
    latencies: dict[str, list[float]] = {}
    ttfts: dict[str, list[float]] = {}
    newest = filters.replies().order_by("-created_at")
    sample = newest.values_list("provider", "latency_ms", "ttft_ms")
    for kind, latency, ttft in sample[:LATENCY_SAMPLE]:
        if latency is not None:
            latencies.setdefault(kind, []).append(latency)
        if ttft is not None:
            ttfts.setdefault(kind, []).append(ttft)
    rows = []
    for kind in sorted(
        set(counts) | set(latencies), key=lambda k: (-counts.get(k, {}).get("requests", 0), k)
    ):
        count = counts.get(kind, totals({}))
        rows.append(
            {
                "provider": kind,
                "label": label(kind),
                "requests": count["requests"],
                "errors": count["errors"],
                "error_rate": count["errors"] / count["requests"] if count["requests"] else 0.0,
                "sampled": len(latencies.get(kind, [])),
                "p50_ms": percentile(latencies.get(kind, []), 0.5),
                "p95_ms": percentile(latencies.get(kind, []), 0.95),
                "p50_ttft_ms": percentile(ttfts.get(kind, []), 0.5),
                "p95_ttft_ms": percentile(ttfts.get(kind, []), 0.95),
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class Report:
    filters: Filters
    total: dict[str, Any]
    days: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    speed: list[dict[str, Any]]


def report(filters: Filters) -> Report:
    """Two scans of the roll-ups (per day; per person, provider and model) and the
    latency sample: the totals and the per-provider counts are added up from them."""
    rows = table(filters)
    days = per_day(filters.usage(), filters.since, filters.until)
    return Report(
        filters=filters,
        total=add_up(days).get(None, totals({})),
        days=days,
        rows=rows,
        speed=speed(filters, rows),
    )


def csv_cell(key: str, value: Any) -> str:
    if key == "cost":
        return f"{Decimal(value):.6f}"
    text = str(value)
    # A model name is whatever a person typed: a spreadsheet must not run it as a formula.
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text
