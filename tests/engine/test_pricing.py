"""Tokens to money from the seeded ModelPrice table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from llm import pricing
from llm.models import ModelPrice

pytestmark = pytest.mark.django_db

DAY = dt.date(2025, 11, 1)


def test_seeded_price_gives_the_cost_of_a_turn() -> None:
    # gpt-4o: $2.50 in, $10.00 out per million tokens.
    assert pricing.cost("openai", "gpt-4o", DAY, 1_000, 500) == Decimal("0.007500")


def test_dated_snapshot_names_use_the_undated_price() -> None:
    assert pricing.cost("openai", "gpt-4o-2024-08-06", DAY, 1_000_000, 0) == Decimal("2.5")
    assert pricing.cost("anthropic", "claude-sonnet-4-5-20250929", DAY, 0, 1_000_000) == Decimal(
        "15"
    )


def test_the_price_in_effect_on_the_day_applies() -> None:
    # o3 was cut from $10/$40 to $2/$8 on 2025-06-10.
    assert pricing.cost("openai", "o3", dt.date(2025, 5, 1), 1_000_000, 0) == Decimal("10")
    assert pricing.cost("openai", "o3", dt.date(2025, 7, 1), 1_000_000, 0) == Decimal("2")
    assert pricing.cost("openai", "o3", dt.date(2025, 1, 1), 1_000_000, 0) == Decimal("0")


def test_the_embedded_model_and_self_hosted_servers_are_free() -> None:
    assert pricing.cost("local", "SmolLM2-135M-Instruct", DAY, 10**6, 10**6) == 0
    assert pricing.cost("ollama", "llama3.2", DAY, 10**6, 10**6) == 0


def test_an_unknown_model_costs_its_providers_highest_price_never_zero() -> None:
    # o1 ($15 in, $60 out) is OpenAI's dearest on that day.
    assert pricing.cost("openai", "gpt-4o-mini-transcribe", DAY, 10**6, 10**6) == Decimal(75)


@pytest.mark.parametrize(
    ("provider", "spelled", "base"),
    [
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("openai", "openai/GPT-4o-2024-08-06", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-latest", "claude-sonnet-4-5"),
    ],
)
def test_model_names_are_matched_as_providers_spell_them(
    provider: str, spelled: str, base: str
) -> None:
    assert pricing.cost(provider, spelled, DAY, 10**6, 10**6) == pricing.cost(
        provider, base, DAY, 10**6, 10**6
    )
    assert pricing.canonical(provider, spelled) == base


def test_a_saved_price_applies_at_once() -> None:
    pricing.cost("openai", "gpt-4o", DAY, 1, 1)  # loads the table
    ModelPrice.objects.create(
        provider="openai",
        model="gpt-4o",
        input_per_million=Decimal("1"),
        output_per_million=Decimal("1"),
        effective_from=DAY,
    )
    assert pricing.cost("openai", "gpt-4o", DAY, 1_000_000, 0) == Decimal("1")
