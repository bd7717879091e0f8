"""Seed ModelPrice with providers' published list prices (USD per million tokens).

Each row is the price from the day it took effect (a model's release or a published
price change). Staff add or correct prices in the admin; a dated snapshot name
(`gpt-4o-2024-08-06`) is priced as its undated name by llm/pricing.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import migrations

# provider, model, input, output, effective from
PRICES = [
    ("openai", "gpt-4o", "2.50", "10.00", "2024-08-06"),
    ("openai", "gpt-4o-mini", "0.15", "0.60", "2024-07-18"),
    ("openai", "gpt-4.1", "2.00", "8.00", "2025-04-14"),
    ("openai", "gpt-4.1-mini", "0.40", "1.60", "2025-04-14"),
    ("openai", "gpt-4.1-nano", "0.10", "0.40", "2025-04-14"),
    ("openai", "gpt-4-turbo", "10.00", "30.00", "2024-04-09"),
    ("openai", "gpt-3.5-turbo", "0.50", "1.50", "2024-01-25"),
    ("openai", "o1", "15.00", "60.00", "2024-12-17"),
    ("openai", "o3-mini", "1.10", "4.40", "2025-01-31"),
    ("openai", "o3", "10.00", "40.00", "2025-04-16"),
    ("openai", "o3", "2.00", "8.00", "2025-06-10"),
    ("openai", "o4-mini", "1.10", "4.40", "2025-04-16"),
    ("openai", "gpt-5", "1.25", "10.00", "2025-08-07"),
    ("openai", "gpt-5-mini", "0.25", "2.00", "2025-08-07"),
    ("openai", "gpt-5-nano", "0.05", "0.40", "2025-08-07"),
    ("anthropic", "claude-sonnet-4-5", "3.00", "15.00", "2025-09-29"),
    ("anthropic", "claude-sonnet-4-0", "3.00", "15.00", "2025-05-22"),
    ("anthropic", "claude-sonnet-4", "3.00", "15.00", "2025-05-22"),
    ("anthropic", "claude-opus-4-1", "15.00", "75.00", "2025-08-05"),
    ("anthropic", "claude-opus-4-0", "15.00", "75.00", "2025-05-22"),
    ("anthropic", "claude-opus-4-5", "5.00", "25.00", "2025-11-24"),
    ("anthropic", "claude-haiku-4-5", "1.00", "5.00", "2025-10-15"),
    ("anthropic", "claude-3-7-sonnet", "3.00", "15.00", "2025-02-24"),
    ("anthropic", "claude-3-5-haiku", "0.80", "4.00", "2024-10-22"),
    ("anthropic", "claude-3-haiku", "0.25", "1.25", "2024-03-07"),
    ("gemini", "gemini-2.0-flash", "0.10", "0.40", "2025-02-05"),
    ("gemini", "gemini-2.0-flash-lite", "0.075", "0.30", "2025-02-25"),
    ("gemini", "gemini-2.5-flash", "0.30", "2.50", "2025-06-17"),
    ("gemini", "gemini-2.5-flash-lite", "0.10", "0.40", "2025-07-22"),
    ("gemini", "gemini-2.5-pro", "1.25", "10.00", "2025-06-17"),
    ("qwen", "qwen-max", "1.60", "6.40", "2025-01-28"),
    ("qwen", "qwen-plus", "0.40", "1.20", "2025-01-28"),
    ("qwen", "qwen-turbo", "0.05", "0.20", "2025-01-28"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("llm", "ModelPrice")
    for provider, model, rate_in, rate_out, since in PRICES:
        ModelPrice.objects.update_or_create(
            provider=provider,
            model=model,
            effective_from=dt.date.fromisoformat(since),
            defaults={
                "input_per_million": Decimal(rate_in),
                "output_per_million": Decimal(rate_out),
            },
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("llm", "ModelPrice")
    for provider, model, _in, _out, since in PRICES:
        ModelPrice.objects.filter(
            provider=provider, model=model, effective_from=dt.date.fromisoformat(since)
        ).delete()


class Migration(migrations.Migration):
    dependencies = [("llm", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
