"""A person's usage and what is left of their budget: one reading for the usage page
(/settings/usage/), the widget's warning and GET /api/v1/usage.

Everything is read from the DailyUsage roll-ups (one row per person, day, provider and
model, written in each turn's finish trip), so deleting a conversation forgets nothing
and no page counts messages. Spend and the month's start come from llm/limits.py, the
rules that refuse a turn: what this module says is left is what a turn is checked against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import dateformat, timezone

from accounts.models import User
from llm import limits
from llm.models import DailyUsage

# The widget warns from this share of the month's budget on.
WARN_AT = Decimal("0.8")

SUMS = {
    "requests": Sum("requests"),
    "errors": Sum("errors"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost"),
}


def resets_on(day: dt.date) -> dt.date:
    """The day the budget of `day`'s month resets: the 1st of the next month."""
    start = limits.month_start(day)
    return (start + dt.timedelta(days=32)).replace(day=1)


def day_words(day: dt.date) -> str:
    """'1 January', as the budget's words say it."""
    return dateformat.format(day, "j F")


@dataclass(frozen=True, slots=True)
class Budget:
    """This month's budget (None: no budget), what was spent of it, and when it resets."""

    limit: Decimal | None
    spent: Decimal
    resets_on: dt.date

    @property
    def left(self) -> Decimal | None:
        return None if self.limit is None else max(self.limit - self.spent, Decimal(0))

    @property
    def used_percent(self) -> int | None:
        """Whole percent used, rounded down: 79.99% is 79, so it never reads 80 too soon."""
        if not self.limit:
            return None
        return int(self.spent * 100 // self.limit)

    @property
    def warn_from(self) -> Decimal | None:
        return None if self.limit is None else (WARN_AT * self.limit).quantize(Decimal("0.01"))

    @property
    def warn(self) -> bool:
        return bool(self.limit) and self.spent >= WARN_AT * (self.limit or 0)

    @property
    def exceeded(self) -> bool:
        return self.limit is not None and self.spent >= self.limit

    def warning(self) -> str:
        """The widget's quiet line, empty under 80% or without a budget."""
        if not self.warn or self.limit is None:
            return ""
        when = day_words(self.resets_on)
        if self.exceeded:
            return (
                f"You have used all of this month's ${self.limit:.2f}; it resets on {when}. "
                "The local model is free to use until then."
            )
        return (
            f"You have used {self.used_percent}% of this month's ${self.limit:.2f}; "
            f"it resets on {when}."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "monthly_budget": None if self.limit is None else str(self.limit),
            "spent": f"{self.spent:.6f}",  # the places a cost is stored with
            "left": None if self.left is None else f"{self.left:.6f}",
            "used_percent": self.used_percent,
            "resets_on": self.resets_on.isoformat(),
            "warning": self.warning() or None,
        }


def budget(user: User, today: dt.date) -> Budget:
    return Budget(
        limit=user.budget(), spent=limits.month_spend(user.pk, today), resets_on=resets_on(today)
    )


def totals(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of sums with zeros where nothing was summed."""
    return {
        "requests": row.get("requests") or 0,
        "errors": row.get("errors") or 0,
        "input_tokens": row.get("input_tokens") or 0,
        "output_tokens": row.get("output_tokens") or 0,
        "cost": Decimal(row.get("cost") or 0),
    }


def rows_for(user: User, since: dt.date, until: dt.date) -> QuerySet[DailyUsage]:
    return DailyUsage.objects.filter(user=user, day__gte=since, day__lte=until)


def per_day(rows: QuerySet[DailyUsage], since: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """Every day from `since` to `until`, oldest first, zeros on days without use."""
    found = {r["day"]: totals(r) for r in rows.values("day").annotate(**SUMS).order_by()}
    days = (until - since).days + 1
    out = []
    for n in range(max(days, 0)):
        day = since + dt.timedelta(days=n)
        out.append({"day": day, **found.get(day, totals({}))})
    return out


def per_model(rows: QuerySet[DailyUsage]) -> list[dict[str, Any]]:
    grouped = rows.values("provider", "model").annotate(**SUMS).order_by("-cost", "provider")
    return [{"provider": r["provider"], "model": r["model"], **totals(r)} for r in grouped]


@dataclass(frozen=True, slots=True)
class MonthUsage:
    month: dt.date  # its first day
    until: dt.date  # its last day, or today in the current month
    total: dict[str, Any]
    days: list[dict[str, Any]]
    models: list[dict[str, Any]]


def month_usage(user: User, month: dt.date, today: dt.date) -> MonthUsage:
    """`month`'s usage (any day in it), to its end or to `today` if that comes first."""
    start = limits.month_start(month)
    until = min(resets_on(start) - dt.timedelta(days=1), max(today, start))
    rows = rows_for(user, start, until)
    return MonthUsage(
        month=start,
        until=until,
        total=totals(rows.aggregate(**SUMS)),
        days=per_day(rows, start, until),
        models=per_model(rows),
    )


def warning_for(user: User) -> str:
    """The widget's budget line for today; no query for a person without a budget."""
    if user.budget() is None:
        return ""
    return budget(user, timezone.localdate()).warning()
