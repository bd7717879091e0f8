"""Hole 6: budgets. Turns that start together cannot overspend, and no model name is
free by not matching the price table."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum

from accounts.models import User
from llm import pricing
from llm.events import TurnError, TurnFinished
from llm.models import DailyUsage, Message, ModelPrice
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]
# SQLite's in-memory test database refuses concurrent writers ("table is locked") where
# a file database queues them; PostgreSQL (CI) shows the real thing.
ON_POSTGRES = "postgresql" in settings.DATABASES["default"]["ENGINE"]

BUDGET = Decimal("0.01")


@pytest.fixture
def alice_on_a_budget(alice: User, fake_openai: FakeOpenAI, settings: Any) -> User:
    cache.clear()
    settings.LLM_MAX_CONCURRENT_REPLIES = 0
    settings.LLM_MAX_RETRIES = 0
    configure(alice, fake_openai, model="gpt-4o", max_tokens=100)
    # Transactional tests empty the seeded price table: price the model here.
    ModelPrice.objects.get_or_create(
        provider="openai",
        model="gpt-4o",
        effective_from=dt.date(2024, 8, 6),
        defaults={"input_per_million": Decimal("2.50"), "output_per_million": Decimal("10.00")},
    )
    pricing.clear_cache()
    alice.monthly_budget = BUDGET
    alice.save()
    return alice


async def one_turn(user: User, text: str) -> str:
    try:
        async for event in run_turn(user, text, provider="openai"):
            if isinstance(event, TurnFinished):
                return event.status
    except TurnError as refused:
        return refused.code
    return "none"


@sync_to_async
def spent(user: User) -> Decimal:
    return DailyUsage.objects.filter(user=user).aggregate(s=Sum("cost"))["s"] or Decimal(0)


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent writers need PostgreSQL here")
async def test_twenty_turns_at_the_edge_spend_at_most_the_budget(
    alice_on_a_budget: User, fake_openai: FakeOpenAI
) -> None:
    # Each reply costs about $0.001 (10 in, 100 out on gpt-4o): without holding each
    # turn's most possible cost while it streams, all 20 would pass a budget check at $0.
    fake_openai.reply("word " * 20, chunks=["word "] * 20, delay=0.02, usage=(10, 100))
    outcomes = await asyncio.gather(*(one_turn(alice_on_a_budget, f"q{i}") for i in range(20)))

    assert "complete" in outcomes and "budget_exceeded" in outcomes
    assert await spent(alice_on_a_budget) <= BUDGET
    refused = sum(o == "budget_exceeded" for o in outcomes)
    assert len(fake_openai.chat_requests) == 20 - refused  # refused before any upstream call
    # Nothing stays held once the replies have ended.
    held = await Message.objects.filter(reserved_cost__gt=0).acount()
    assert held == 0


async def test_a_stopped_reply_still_counts(
    alice_on_a_budget: User, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("word " * 50, chunks=["word "] * 50, delay=0.02, usage=(100, 100))
    turn = run_turn(alice_on_a_budget, "Long", provider="openai")
    async for event in turn:
        if not isinstance(event, TurnFinished) and turn.seq >= 4:
            break
    await turn.aclose()
    assert turn.result is not None and turn.result.status == "stopped"
    assert await spent(alice_on_a_budget) > 0


async def test_an_unpriced_model_name_is_not_free(
    alice_on_a_budget: User, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Hi.", usage=(1000, 1000))
    async for event in run_turn(
        alice_on_a_budget, "Hi", provider="openai", model="gpt-4o-next-preview"
    ):
        if isinstance(event, TurnFinished):
            assert event.cost > 0
