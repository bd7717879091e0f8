"""Tokens to money: the ModelPrice effective on the day of the turn.

Prices change a few times a year, and a turn must not pay a query for them, so each
process keeps the whole table in memory and reloads it at most once a minute (and at
once when a price is saved in this process). Local models, and models with no price,
cost 0. A dated model name (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) uses
the price of its undated name.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models.signals import post_delete, post_save

from llm.models import ModelPrice

RELOAD_SECONDS = 60.0
MILLION = Decimal(1_000_000)
CENT_FRACTION = Decimal("0.000001")  # Message.cost and DailyUsage.cost keep 6 places
ZERO = Decimal(0)
# What providers append to a model name for a snapshot of it.
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|@\d{8})$")

Rates = tuple[Decimal, Decimal]  # USD per million input, output tokens
_lock = threading.Lock()
# (provider, model) -> [(effective_from, rates)], newest first
_table: dict[tuple[str, str], list[tuple[dt.date, Rates]]] = {}
_loaded_at = -RELOAD_SECONDS


def _load() -> dict[tuple[str, str], list[tuple[dt.date, Rates]]]:
    global _table, _loaded_at
    with _lock:
        if time.monotonic() - _loaded_at < RELOAD_SECONDS:
            return _table
        table: dict[tuple[str, str], list[tuple[dt.date, Rates]]] = {}
        rows = ModelPrice.objects.order_by("-effective_from").values_list(
            "provider", "model", "effective_from", "input_per_million", "output_per_million"
        )
        for provider, model, since, rate_in, rate_out in rows:
            table.setdefault((provider, model.lower()), []).append((since, (rate_in, rate_out)))
        _table, _loaded_at = table, time.monotonic()
        return table


def clear_cache(**_: Any) -> None:
    """Forget the loaded prices; the next turn reads the table again."""
    global _loaded_at
    with _lock:
        _loaded_at = -RELOAD_SECONDS


post_save.connect(clear_cache, sender=ModelPrice, dispatch_uid="pricing.clear_cache.save")
post_delete.connect(clear_cache, sender=ModelPrice, dispatch_uid="pricing.clear_cache.delete")


def rates(provider: str, model: str, day: dt.date) -> Rates | None:
    """USD per million (input, output) tokens for that model on that day, if known."""
    table = _load()
    name = model.lower()
    history = table.get((provider, name))
    if history is None:
        history = table.get((provider, _SNAPSHOT.sub("", name)))
    if history is None:
        return None
    for since, price in history:
        if since <= day:
            return price
    return None


def cost(provider: str, model: str, day: dt.date, input_tokens: int, output_tokens: int) -> Decimal:
    price = rates(provider, model, day)
    if price is None:
        return ZERO
    rate_in, rate_out = price
    total = (rate_in * input_tokens + rate_out * output_tokens) / MILLION
    return total.quantize(CENT_FRACTION, rounding=ROUND_HALF_UP)
