"""Rate limits and monthly budgets shared by every transport, and the usage they read.

Everything here but acheck_rate is synchronous: the engine calls it inside its start
and finish trips, which already run off the event loop, so a limit check costs no
thread hop of its own; acheck_rate serves the async start on PostgreSQL (llm/pg_trips.py).
The rate limit lives in the Django cache (Redis in production, so every worker and
every transport counts against the same window); budgets are read from DailyUsage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import connection
from django.db.models import Sum

from accounts.models import User
from llm.models import DailyUsage, Message

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_cache: BaseCache | None = None
_redis: Any = None  # redis.Redis when the cache is Redis; thread-safe, one per process
_aredis: dict[asyncio.AbstractEventLoop, Any] = {}  # redis.asyncio.Redis per event loop


def _shared_cache() -> BaseCache:
    """One cache client for the process.

    `django.core.cache.cache` is per async context: each worker-thread trip runs in a
    fresh copy of the request's context, so it would build a new client, and with Redis
    a new connection pool and TCP connection, for every turn.
    """
    global _cache
    if _cache is None:
        _cache = caches.create_connection("default")
    return _cache


def _forget_cache(*, setting: str, **kwargs: object) -> None:
    global _cache, _redis
    if setting == "CACHES":
        _cache = _redis = None
        _aredis.clear()


def _redis_client(cache: BaseCache) -> Any:
    """The Redis client behind a RedisCache, built once (Django builds one per call)."""
    global _redis
    if _redis is None:
        # The cache's own client and pool: the same server, database and connections.
        _redis = cache._cache.get_client(None, write=True)  # type: ignore[attr-defined]
    return _redis


def _async_redis(cache: BaseCache) -> Any:
    """This event loop's asyncio Redis client for the cache's server (a client's
    connections belong to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    client = _aredis.get(loop)
    if client is None:
        for stale in [k for k in _aredis if k.is_closed()]:
            del _aredis[stale]
        location = settings.CACHES["default"]["LOCATION"]
        url = location[0] if isinstance(location, list | tuple) else location
        client = _aredis[loop] = aioredis.Redis.from_url(url)
    return client


setting_changed.connect(_forget_cache, dispatch_uid="llm.limits.forget_cache")


class LimitError(Exception):
    """A turn refused by a limit; `code` is an API.md error code."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def parse_rate(rate: str) -> tuple[int, int]:
    """'30/m' -> (30, 60). An empty or '0/…' rate means no limit (count 0)."""
    if not rate.strip():
        return 0, 60
    count, _, unit = rate.strip().partition("/")
    try:
        return int(count), PERIODS[unit.strip().lower()[:1] or "m"]
    except (KeyError, ValueError):
        raise ValueError(
            f"LLM_RATE_LIMIT={rate!r} is not a rate: write it like 30/m (per s, m, h or d)."
        ) from None


def check_rate(user_id: int, turns: int = 1) -> None:
    """Count `turns` turns (or a test connection, or a model list) for this person in the
    current window; refuse past the limit. A compare counts all its replies at once, so
    either every column starts or none does.

    A fixed window per user: one cache increment per turn in the common case.
    """
    limit, period = parse_rate(settings.LLM_RATE_LIMIT)
    if limit <= 0:
        return
    now = time.time()
    key = _window_key(user_id, period, now)
    count = _count(key, period + 1, turns)
    if count > limit and turns > 1:
        _count(key, period + 1, -turns)  # none of them start
    _judge(count, turns, limit, period, now)


async def acheck_rate(user_id: int) -> None:
    """check_rate for one turn, from the event loop: with Redis, one async round trip on
    this loop's client (no thread hop); an in-process cache needs no I/O at all."""
    limit, period = parse_rate(settings.LLM_RATE_LIMIT)
    if limit <= 0:
        return
    cache = _shared_cache()
    if not isinstance(cache, RedisCache):
        check_rate(user_id)
        return
    now = time.time()
    full_key = cache.make_and_validate_key(_window_key(user_id, period, now))
    pipe = _async_redis(cache).pipeline(transaction=True)
    pipe.set(full_key, 0, ex=period + 1, nx=True)
    pipe.incr(full_key, 1)
    _created, count = await pipe.execute()
    _judge(int(count), 1, limit, period, now)


def _window_key(user_id: int, period: int, now: float) -> str:
    return f"llm:rate:{user_id}:{int(now // period)}"


def _judge(count: int, turns: int, limit: int, period: int, now: float) -> None:
    """Refuse, in words, `turns` that took the window's count to `count` past `limit`."""
    if count <= limit:
        return
    retry_after = max(1.0, (int(now // period) + 1) * period - now)
    if turns > 1:
        left = max(0, limit - (count - turns))
        raise LimitError(
            "rate_limited",
            f"A compare of {turns} replies counts as {turns} messages, and {left} of your "
            f"{limit} per {_period_words(period)} are left: compare fewer models, or try "
            f"again in {round(retry_after)} seconds.",
            retry_after=retry_after,
        )
    raise LimitError(
        "rate_limited",
        f"You have sent {limit} messages in the last {_period_words(period)} (connection "
        f"tests and model lists count too), which is the limit: try again in "
        f"{round(retry_after)} seconds.",
        retry_after=retry_after,
    )


def _count(key: str, ttl: int, by: int = 1) -> int:
    """Add `by` to the window's counter, created with `ttl` seconds to live; the new count."""
    cache = _shared_cache()
    if isinstance(cache, RedisCache):
        # One round trip, atomic: Django's incr is EXISTS then INCR, and the first turn of
        # a window adds a third. The key and the stored integer are the cache's own, so
        # cache.get() and cache.delete() see the same counter.
        full_key = cache.make_and_validate_key(key)
        pipe = _redis_client(cache).pipeline(transaction=True)
        pipe.set(full_key, 0, ex=ttl, nx=True)
        pipe.incr(full_key, by)
        _created, count = pipe.execute()
        return int(count)
    try:
        return cache.incr(key, by)
    except ValueError:  # first turn in this window
        return by if cache.add(key, by, ttl) else cache.incr(key, by)


def _period_words(period: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86400: "day"}[period]


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_spend(user_id: int, day: dt.date) -> Decimal:
    total = (
        DailyUsage.objects.filter(user_id=user_id, day__gte=month_start(day), day__lte=day)
        .aggregate(total=Sum("cost"))
        .get("total")
    )
    return Decimal(total or 0)


def reserved(user_id: int, live_since: dt.datetime) -> Decimal:
    """What the person's replies still being written may yet cost (rows left by a dead
    process, older than `live_since`, hold nothing)."""
    total = (
        Message.objects.filter(
            conversation__user_id=user_id, status=Message.Status.STREAMING,
            updated_at__gte=live_since,
        )
        .aggregate(total=Sum("reserved_cost"))
        .get("total")
    )  # fmt: skip
    return Decimal(total or 0)


def check_budget(
    user: User, day: dt.date, *, reserve: Decimal = Decimal(0), live_since: dt.datetime
) -> None:
    """Refuse a turn whose most possible cost (`reserve`) does not fit in what is left of
    this month's budget, counting what the person's streaming replies may still cost.

    Runs inside the start trip's transaction with the person's row locked (PostgreSQL;
    SQLite's write transactions run one at a time), so that turns starting together
    cannot all pass on the same remainder. No query without a budget.
    """
    budget = user.budget()
    if budget is None:
        return
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    spent = month_spend(user.pk, day)
    held = reserved(user.pk, live_since)
    if spent >= budget:
        raise LimitError(
            "budget_exceeded",
            f"You have used ${spent:.2f} of your ${budget:.2f} monthly budget. It resets on "
            "the 1st; ask your administrator to raise it, or use the local model (it is free).",
        )
    if spent + held + reserve > budget:
        left = max(budget - spent - held, Decimal(0))
        raise LimitError(
            "budget_exceeded",
            f"This reply could cost up to ${reserve:.4f}, and ${left:.4f} is left of your "
            f"${budget:.2f} monthly budget (your replies still being written count). Wait "
            "for them, ask for a shorter reply (max tokens), or use the local model.",
        )


def record_usage(
    *,
    user_id: int,
    day: dt.date,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cost: Decimal,
    failed: bool,
) -> None:
    """Add one turn to the person's DailyUsage row in a single statement.

    INSERT … ON CONFLICT DO UPDATE is the same SQL on PostgreSQL and SQLite (3.24+),
    and atomic under concurrency, unlike read-then-write.
    """
    table = connection.ops.quote_name(DailyUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, day, provider, model, requests, errors, "
            "input_tokens, output_tokens, cost) VALUES (%s, %s, %s, %s, 1, %s, %s, %s, %s) "
            "ON CONFLICT (user_id, day, provider, model) DO UPDATE SET "
            f"requests = {table}.requests + 1, "
            f"errors = {table}.errors + excluded.errors, "
            f"input_tokens = {table}.input_tokens + excluded.input_tokens, "
            f"output_tokens = {table}.output_tokens + excluded.output_tokens, "
            f"cost = {table}.cost + excluded.cost",
            [
                user_id,
                connection.ops.adapt_datefield_value(day),
                provider,
                model,
                int(failed),
                input_tokens,
                output_tokens,
                connection.ops.adapt_decimalfield_value(cost, 14, 6),
            ],
        )
