"""Usage over a span of days from the DailyUsage roll-ups (`manage.py usage_report`).

The roll-ups are written in each turn's finish trip and outlive conversations, so a
report counts what pruned or deleted conversations spent too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from llm.models import DailyUsage

# What a report may be grouped by, and the DailyUsage field each one reads.
GROUPS = {"user": "user__username", "provider": "provider", "model": "model", "day": "day"}
DEFAULT_GROUPS = ("user", "provider", "model")
FIGURES = ("requests", "errors", "input_tokens", "output_tokens", "cost")


@dataclass(frozen=True)
class Line:
    """One group's figures; `keys` follow the report's groups, in their order."""

    keys: tuple[str, ...]
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)


def parse_groups(text: str) -> tuple[str, ...]:
    """'user,provider' -> ('user', 'provider'); unknown or repeated names are a ValueError."""
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise ValueError(
            f"--by {text!r} is not a grouping: use a comma-separated list of "
            + ", ".join(GROUPS)
            + " (e.g. --by user,provider,model or --by day)."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--by {text!r} names a grouping twice.")
    return names


def lines(
    since: dt.date,
    until: dt.date,
    *,
    groups: Sequence[str] = DEFAULT_GROUPS,
    user_id: int | None = None,
    provider: str | None = None,
) -> list[Line]:
    """The figures per group over `since`..`until` (both included), sorted by the groups."""
    rows = DailyUsage.objects.filter(day__gte=since, day__lte=until)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if provider is not None:
        rows = rows.filter(provider=provider)
    fields = [GROUPS[name] for name in groups]
    summed = rows.values(*fields).annotate(**{name: Sum(name) for name in FIGURES})
    return [_line(row, fields) for row in summed.order_by(*fields)]


def _line(row: dict[str, Any], fields: Sequence[str]) -> Line:
    keys = tuple(
        value.isoformat() if isinstance(value, dt.date) else str(value)
        for value in (row[field] for field in fields)
    )
    return Line(
        keys,
        requests=int(row["requests"] or 0),
        errors=int(row["errors"] or 0),
        input_tokens=int(row["input_tokens"] or 0),
        output_tokens=int(row["output_tokens"] or 0),
        cost=Decimal(row["cost"] or 0),
    )


def total(report: Sequence[Line]) -> Line:
    return Line(
        (),
        requests=sum(line.requests for line in report),
        errors=sum(line.errors for line in report),
        input_tokens=sum(line.input_tokens for line in report),
        output_tokens=sum(line.output_tokens for line in report),
        cost=sum((line.cost for line in report), Decimal(0)),
    )
