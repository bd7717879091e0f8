"""Tokens to money: the ModelPrice effective on the day of the turn.

Prices change a few times a year, and a turn must not pay a query for them, so each
process keeps the whole table in memory and reloads it at most once a minute (and at
once when a price is saved in this process).

Names are matched as providers spell them: case aside, a `models/` or `provider/`
prefix and a snapshot suffix (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`,
`gemini-2.0-flash-001`, `-latest`) give the base model's price. A model the table does
not know is costed at its provider's highest known price, never 0, so that no model
name slips past a budget (staff add its real price in the admin). Only providers with
no prices at all (the embedded model, self-hosted servers) cost 0.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models.signals import post_delete, post_save

from llm import trips
from llm.models import ModelPrice

RELOAD_SECONDS = 60.0
MILLION = Decimal(1_000_000)
CENT_FRACTION = Decimal("0.000001")  # Message.cost and DailyUsage.cost keep 6 places
ZERO = Decimal(0)
# What providers append to a model name for a snapshot of it.
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{3}|-latest|@\d{8}|@latest)$")

Rates = tuple[Decimal, Decimal]  # USD per million input, output tokens
_lock = threading.Lock()
# (provider, model) -> [(effective_from, rates)], newest first
_table: dict[tuple[str, str], list[tuple[dt.date, Rates]]] = {}
_loaded_at = -RELOAD_SECONDS
# fresh() reloads this much early, so that a cost() just after it never reloads.
FRESH_MARGIN_SECONDS = 5.0


def _load(force: bool = False) -> dict[tuple[str, str], list[tuple[dt.date, Rates]]]:
    global _table, _loaded_at
    with _lock:
        if not force and time.monotonic() - _loaded_at < RELOAD_SECONDS:
            return _table
        table: dict[tuple[str, str], list[tuple[dt.date, Rates]]] = {}
        rows = ModelPrice.objects.order_by("-effective_from").values_list(
            "provider", "model", "effective_from", "input_per_million", "output_per_million"
        )
        for provider, model, since, rate_in, rate_out in rows:
            table.setdefault((provider, model.lower()), []).append((since, (rate_in, rate_out)))
        _table, _loaded_at = table, time.monotonic()
        return table


async def fresh() -> None:
    """Reload the prices now, on a database trip, if the next cost() would reload them:
    PostgreSQL's async finish (llm/pg_trips.py) must not query on the event loop."""
    if time.monotonic() - _loaded_at >= RELOAD_SECONDS - FRESH_MARGIN_SECONDS:
        # The table in memory stays in use meanwhile: it is still fresh for the margin.
        await trips.trip(_load)(force=True)


def clear_cache(**_: Any) -> None:
    """Forget the loaded prices; the next turn reads the table again."""
    global _loaded_at
    with _lock:
        _loaded_at = -RELOAD_SECONDS


post_save.connect(clear_cache, sender=ModelPrice, dispatch_uid="pricing.clear_cache.save")
post_delete.connect(clear_cache, sender=ModelPrice, dispatch_uid="pricing.clear_cache.delete")


def canonical(provider: str, model: str) -> str:
    """The name the price table knows a model by (see the module's docstring)."""
    name = model.strip().lower()
    name = name.removeprefix("models/").removeprefix(f"{provider}/")
    while True:
        shorter = _SNAPSHOT.sub("", name)
        if shorter == name:
            return name
        name = shorter


def _on(history: list[tuple[dt.date, Rates]], day: dt.date) -> Rates | None:
    for since, price in history:
        if since <= day:
            return price
    return None


def rates(provider: str, model: str, day: dt.date) -> Rates | None:
    """USD per million (input, output) tokens for that model on that day: its own price,
    else its provider's highest known one; None for a provider with no prices."""
    table = _load()
    name = model.lower()
    history = table.get((provider, name)) or table.get((provider, canonical(provider, model)))
    if history is not None:
        return _on(history, day)
    known = [p for (kind, _m), h in table.items() if kind == provider and (p := _on(h, day))]
    if not known:
        return None
    return max(r[0] for r in known), max(r[1] for r in known)


def _priced(price: Rates, input_tokens: int, output_tokens: int) -> Decimal:
    rate_in, rate_out = price
    total = (rate_in * input_tokens + rate_out * output_tokens) / MILLION
    return total.quantize(CENT_FRACTION, rounding=ROUND_HALF_UP)


def cost(provider: str, model: str, day: dt.date, input_tokens: int, output_tokens: int) -> Decimal:
    price = rates(provider, model, day)
    return ZERO if price is None else _priced(price, input_tokens, output_tokens)


def most(provider: str, model: str, day: dt.date, input_tokens: int, max_tokens: int) -> Decimal:
    """The most a turn can cost: its prompt, and a reply as long as it may be."""
    return cost(provider, model, day, input_tokens, max_tokens)
