"""Provider health for staff: the last minutes of replies per provider kind, and the
circuit breakers that are open. One computation for GET /api/v1/health/providers and
the usage dashboard (/admin/usage/).

Read from the stored assistant messages: a reply counts once it has ended (complete,
stopped or error; one played from a person's cache never reached a provider and does
not count). The p95 is taken over the newest first-token times, at most
`MAX_TTFT_SAMPLES` of them, so that the query stays bounded on a busy hub.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q

from llm.models import Message, ProviderConfig, Upstream
from llm.providers import registry

WINDOW = dt.timedelta(minutes=15)
MAX_TTFT_SAMPLES = 10_000
MAX_UPSTREAMS = 100


@dataclass(frozen=True, slots=True)
class KindHealth:
    provider: str
    label: str
    requests: int
    errors: int
    p95_ttft_ms: float | None
    open_breakers: int  # configurations of this kind that turns skip for now

    @property
    def error_rate(self) -> float:
        return round(self.errors / self.requests, 4) if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "label": self.label,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p95_ttft_ms": self.p95_ttft_ms,
            "open_breakers": self.open_breakers,
        }


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    address: str
    retry_at: dt.datetime
    failure: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "retry_at": self.retry_at.isoformat(),
            "failure": self.failure,
        }


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    since: dt.datetime
    providers: list[KindHealth]
    upstreams: list[OpenUpstream]

    def as_dict(self) -> dict[str, Any]:
        return {
            "window_minutes": int(WINDOW.total_seconds() // 60),
            "since": self.since.isoformat(),
            "providers": [row.as_dict() for row in self.providers],
            "open_upstreams": [row.as_dict() for row in self.upstreams],
        }


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile: the value 95% of the others do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[math.ceil(0.95 * len(ordered)) - 1], 1)


def _order(kind: str) -> tuple[int, str]:
    kinds = list(registry.PROVIDERS)
    return (kinds.index(kind), "") if kind in kinds else (len(kinds), kind)


def provider_health(now: dt.datetime) -> ProviderHealth:
    """Every kind with replies in the window or an open breaker, in the registry's order."""
    since = now - WINDOW
    replies = Message.objects.filter(
        role=Message.Role.ASSISTANT, created_at__gte=since, created_at__lte=now, cached=False
    ).exclude(status=Message.Status.STREAMING)
    counts = {
        row["provider"]: row
        for row in replies.values("provider").annotate(
            requests=Count("id"), errors=Count("id", filter=Q(status=Message.Status.ERROR))
        )
    }
    ttfts: dict[str, list[float]] = {}
    newest = replies.filter(ttft_ms__isnull=False).order_by("-id")
    for kind, ttft in newest.values_list("provider", "ttft_ms")[:MAX_TTFT_SAMPLES]:
        if ttft is not None:
            ttfts.setdefault(kind, []).append(ttft)
    open_configs = {
        row["kind"]: row["n"]
        for row in ProviderConfig.objects.filter(open_until__gt=now)
        .values("kind")
        .annotate(n=Count("id"))
    }
    kinds = sorted(set(counts) | set(open_configs), key=_order)
    rows = [
        KindHealth(
            provider=kind,
            label=registry.spec(kind).label if kind in registry.PROVIDERS else kind,
            requests=counts[kind]["requests"] if kind in counts else 0,
            errors=counts[kind]["errors"] if kind in counts else 0,
            p95_ttft_ms=p95(ttfts.get(kind, [])),
            open_breakers=open_configs.get(kind, 0),
        )
        for kind in kinds
    ]
    upstreams = [
        OpenUpstream(u.address, u.open_until, u.failure)
        for u in Upstream.objects.filter(open_until__gt=now).order_by("open_until")[:MAX_UPSTREAMS]
        if u.open_until is not None
    ]
    return ProviderHealth(since, rows, upstreams)
