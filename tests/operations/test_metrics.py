"""GET /metrics after real turns against the fake providers: names, labels, values.

The metrics directory is shared by every process on the machine, so each test counts
under a model name of its own, or reads this process's own values (prometheus-client's
REGISTRY holds them) for the labels other processes may use too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from llm import breakers, compare, metrics, pricing, replies
from llm.events import TurnError, TurnFinished
from llm.models import Message, ModelPrice
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _fresh(settings: Any) -> None:
    cache.clear()
    pricing.clear_cache()
    settings.LLM_MAX_RETRIES = 0


@pytest.fixture
def model() -> str:
    return f"gpt-metrics-{uuid.uuid4().hex[:8]}"


def scrape(client: Client | None = None) -> Samples:
    response = (client or Client()).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def own(name: str, **labels: str) -> float:
    """This process's own value (what it wrote to its files)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def one_turn(user: User, text: str = "Hello", **options: Any) -> str:
    try:
        async for event in run_turn(user, text, provider="openai", **options):
            if isinstance(event, TurnFinished):
                return event.status
    except TurnError as refused:
        return refused.code
    return "none"


async def test_turns_tokens_cost_and_times_add_up_after_a_few_turns(
    alice: User, fake_openai: FakeOpenAI, model: str
) -> None:
    await sync_to_async(configure)(alice, fake_openai, model=model)
    await ModelPrice.objects.acreate(
        provider="openai",
        model=model,
        effective_from=dt.date(2024, 1, 1),
        input_per_million=Decimal("1.00"),
        output_per_million=Decimal("2.00"),
    )
    fake_openai.reply("One.", usage=(7, 3))
    assert await one_turn(alice) == "complete"
    fake_openai.reply("Two.", usage=(5, 4))
    assert await one_turn(alice) == "complete"
    fake_openai.fail(500)
    assert await one_turn(alice) == "error"

    samples = await sync_to_async(scrape)()
    rows = [m async for m in Message.objects.filter(model=model, role="assistant")]
    labels = {"provider": "openai", "model": model}
    assert value(samples, "coppertone_turns_total", **labels, status="complete") == 2
    assert value(samples, "coppertone_turns_total", **labels, status="error") == 1
    # The stored replies and the counters agree (the failed turn's prompt is estimated).
    inputs = sum(m.input_tokens for m in rows)
    assert inputs > 12
    assert value(samples, "coppertone_tokens_total", **labels, direction="input") == inputs
    assert value(samples, "coppertone_tokens_total", **labels, direction="output") == 7
    cost = float(sum(m.cost for m in rows))
    assert cost == pytest.approx(inputs * 1e-6 + (3 + 4) * 2e-6)
    assert value(samples, "coppertone_cost_usd_total", **labels) == pytest.approx(cost)
    # Times: a first token for the two answers, an end for all three.
    assert value(samples, "coppertone_first_token_seconds_count", **labels) == 2
    assert value(samples, "coppertone_first_token_seconds_bucket", **labels, le="+Inf") == 2
    assert value(samples, "coppertone_turn_seconds_count", **labels) == 3
    assert value(samples, "coppertone_turn_seconds_bucket", **labels, le="600.0") == 3
    latency = sum(m.latency_ms or 0 for m in rows) / 1000
    assert value(samples, "coppertone_turn_seconds_sum", **labels) == pytest.approx(latency)


def test_every_metric_is_described_by_name_and_type(client: Client) -> None:
    response = client.get("/metrics")
    families = {f.name: f.type for f in text_string_to_metric_families(response.content.decode())}
    # Counters and histograms show once something was counted; these always do.
    assert families["coppertone_live_replies"] == "gauge"
    assert families["coppertone_open_breakers"] == "gauge"
    text = response.content.decode()
    for name in ("coppertone_turns", "coppertone_tokens", "coppertone_cost_usd"):
        assert f"# TYPE {name}_total counter" in text or f"# TYPE {name} counter" in text


async def test_rate_limit_and_budget_refusals_are_counted_by_code(
    alice: User, fake_openai: FakeOpenAI, model: str, settings: Any
) -> None:
    await sync_to_async(configure)(alice, fake_openai, model=model, max_tokens=100)
    rate_before = own("coppertone_refusals_total", code="rate_limited")
    budget_before = own("coppertone_refusals_total", code="budget_exceeded")
    settings.LLM_RATE_LIMIT = "1/m"
    assert await one_turn(alice) == "complete"
    assert await one_turn(alice) == "rate_limited"

    settings.LLM_RATE_LIMIT = "100/m"
    await ModelPrice.objects.acreate(
        provider="openai",
        model=model,
        effective_from=dt.date(2024, 1, 1),
        input_per_million=Decimal("1.00"),
        output_per_million=Decimal("2.00"),
    )
    pricing.clear_cache()
    alice.monthly_budget = Decimal("0")
    await alice.asave()
    assert await one_turn(alice) == "budget_exceeded"

    assert own("coppertone_refusals_total", code="rate_limited") == rate_before + 1
    assert own("coppertone_refusals_total", code="budget_exceeded") == budget_before + 1
    samples = await sync_to_async(scrape)()
    assert value(samples, "coppertone_refusals_total", code="rate_limited")
    assert value(samples, "coppertone_refusals_total", code="budget_exceeded")


async def test_a_breaker_that_opens_is_counted_and_shown_open(
    alice: User, fake_openai: FakeOpenAI, model: str, settings: Any
) -> None:
    settings.LLM_BREAKER_FAILURES = 1
    await sync_to_async(configure)(alice, fake_openai, model=model)
    before = {
        scope: own("coppertone_breaker_opens_total", scope=scope)
        for scope in ("configuration", "server")
    }
    fake_openai.fail(503)
    assert await one_turn(alice) == "error"

    assert (
        own("coppertone_breaker_opens_total", scope="configuration") == before["configuration"] + 1
    )
    assert own("coppertone_breaker_opens_total", scope="server") == before["server"] + 1
    samples = await sync_to_async(scrape)()
    # Read from the database: the same on every worker, not added up.
    assert value(samples, "coppertone_open_breakers", scope="configuration") == 1
    assert value(samples, "coppertone_open_breakers", scope="server") == 1
    breakers.servers.forget()  # the next test must not see the fake's server open


async def test_live_replies_count_while_a_reply_is_written(
    alice: User, fake_openai: FakeOpenAI, model: str
) -> None:
    await sync_to_async(configure)(alice, fake_openai, model=model)
    before = own("coppertone_live_replies")
    fake_openai.reply("slow and steady", chunks=["slow ", "and ", "steady"], delay=0.3)
    reply = await replies.start(run_turn(alice, "Go", provider="openai"))

    assert own("coppertone_live_replies") == before + 1
    samples = await sync_to_async(scrape)()
    assert (value(samples, "coppertone_live_replies") or 0) >= 1
    await reply.ended()
    assert own("coppertone_live_replies") == before


async def test_turns_waiting_for_a_capped_upstream_are_the_queue_depth(
    alice: User, fake_openai: FakeOpenAI, model: str, settings: Any
) -> None:
    settings.LLM_MAX_CONCURRENT_REPLIES = 0
    await sync_to_async(configure)(alice, fake_openai, model=model, max_concurrent=1)
    upstream = "http://" + fake_openai.base_url.split("//")[1].split("/")[0]
    fake_openai.reply("slow", chunks=["s", "l", "o", "w"], delay=0.2)
    first = await replies.start(run_turn(alice, "one", provider="openai"))
    second = await replies.start(run_turn(alice, "two", provider="openai"))
    for _ in range(50):
        if own("coppertone_queued_turns", upstream=upstream) == 1:
            break
        await asyncio.sleep(0.02)

    assert own("coppertone_queued_turns", upstream=upstream) == 1
    samples = await sync_to_async(scrape)()
    assert (value(samples, "coppertone_queued_turns", upstream=upstream) or 0) >= 1
    assert (await first.ended()).status == "complete"
    assert (await second.ended()).status == "complete"
    assert own("coppertone_queued_turns", upstream=upstream) == 0


def test_model_labels_are_redacted_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_series", {})
    monkeypatch.setattr(metrics, "MAX_SERIES", 2)
    kind = f"bound-{uuid.uuid4().hex[:6]}"

    def ended(model: str) -> None:
        metrics.turn_ended(
            TurnFinished(1, 1, "complete", "", "", kind, model, 1, 1, Decimal(0), 10.0, 20.0, None)
        )

    ended("sk-proj-abcdefghijklmnop")  # a key pasted as a model name
    ended("second")
    ended("third")
    ended("fourth")

    assert own("coppertone_turns_total", provider=kind, model="sk-[redacted]", status="complete")
    assert own("coppertone_turns_total", provider=kind, model="second", status="complete") == 1
    assert own("coppertone_turns_total", provider=kind, model="third", status="complete") == 0
    assert own("coppertone_turns_total", provider=kind, model="other", status="complete") == 2


async def test_a_compare_refused_by_the_rate_limit_is_counted_once(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    await sync_to_async(configure)(alice, fake_openai)
    settings.LLM_RATE_LIMIT = "1/m"
    before = own("coppertone_refusals_total", code="rate_limited")
    wanted = [compare.Target("openai", "gpt-4o"), compare.Target("openai", "gpt-4o-mini")]
    with pytest.raises(TurnError) as refused:
        await compare.start(alice, "Which is better?", wanted)
    assert refused.value.code == "rate_limited"
    assert own("coppertone_refusals_total", code="rate_limited") == before + 1
