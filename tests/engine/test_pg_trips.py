"""PostgreSQL's hot path (llm/pg_trips.py): the same turn, stored the same, in one
statement a step; the thread path for everything it does not take."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from accounts.models import ApiToken, User
from llm import pg_trips, turn_trips
from llm.events import TurnError, TurnFinished
from llm.models import Conversation, DailyUsage, Message, ModelPrice
from llm.providers.base import ChatMessage
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own path"),
]


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """The statements the async pool ran during the test."""
    seen: list[str] = []
    pg_trips.observer = seen.append
    yield seen
    pg_trips.observer = None


@pytest.fixture
def thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[turn_trips.Ask]:
    """The asks that went the thread path's start."""
    asked: list[turn_trips.Ask] = []
    original = turn_trips.start

    def start(ask: turn_trips.Ask) -> Any:
        asked.append(ask)
        return original(ask)

    monkeypatch.setattr("llm.turns.start_trip", turn_trips.trips.trip(start))
    return asked


async def swept() -> None:
    # The first start of a process sweeps on the thread path; the tests start after it.
    await sync_to_async(turn_trips._sweep_once)()


async def finished(turn: Any) -> TurnFinished:
    events = [event async for event in turn]
    assert isinstance(events[-1], TurnFinished)
    return events[-1]


@sync_to_async
def stored(conversation_id: int) -> list[tuple[Any, ...]]:
    return list(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("id")
        .values_list(
            "role", "content", "status", "provider", "model", "input_tokens", "output_tokens",
            "cost", "reply_to_id", "seq", "reserved_cost", "error_code", "error_message",
            "thinking", "attempts", "cached",
        )
    )  # fmt: skip


async def test_a_v1_turn_takes_two_round_trips_and_stores_what_the_thread_path_stores(
    alice: User,
    fake_openai: FakeOpenAI,
    statements: list[str],
    thread_starts: list[turn_trips.Ask],
    settings: Any,
) -> None:
    await sync_to_async(configure)(alice, fake_openai)
    await ModelPrice.objects.aupdate_or_create(
        provider="openai", model="gpt-4o", effective_from=dt.date(2024, 8, 6),
        defaults={"input_per_million": Decimal("2.50"), "output_per_million": Decimal("10.00")},
    )  # fmt: skip
    await swept()
    history = [
        ChatMessage(role="user", content="Earlier"),
        ChatMessage(role="assistant", content="Yes"),
    ]
    results = []
    for async_path in (True, False):
        settings.LLM_ASYNC_DATABASE = async_path
        fake_openai.reply("Hello there.", usage=(1000, 2000))
        results.append(
            await finished(run_turn(alice, "Say hello", provider="openai", history=history))
        )
    fast, slow = results
    assert len(thread_starts) == 1  # only the second, with the async path off
    # the person's lock and the start (one round trip), the finish
    assert [s.split()[0] for s in statements] == ["SELECT", "WITH", "WITH"]
    assert fast.status == slow.status == "complete"
    assert fast.cost == slow.cost == Decimal("0.0225")
    first, second = await stored(fast.conversation_id), await stored(slow.conversation_id)
    # role, content, status, provider, model, tokens and cost alike; then the links
    assert [row[:8] for row in first] == [row[:8] for row in second]
    asked, answer = first
    assert answer[8] is not None and answer[9:] == second[1][9:]  # reply_to aside, the rest
    assert answer[10] == 0  # nothing left reserved
    # The provider was sent the same messages both times, history first.
    sent = [r.json["messages"] for r in fake_openai.chat_requests[-2:]]
    assert sent[0] == sent[1] and [m["content"] for m in sent[0]] == ["Earlier", "Yes", "Say hello"]
    usage = await DailyUsage.objects.aget(user=alice)
    assert (usage.requests, usage.input_tokens, usage.cost) == (2, 2000, Decimal("0.045"))
    conversation = await Conversation.objects.aget(pk=fast.conversation_id)
    assert conversation.title == "Say hello" and conversation.user_id == alice.pk


async def test_refusals_are_worded_as_on_the_thread_path_and_store_nothing(
    alice: User, fake_openai: FakeOpenAI, statements: list[str], settings: Any
) -> None:
    await swept()
    with pytest.raises(TurnError) as refused:
        await finished(run_turn(alice, "Hello", provider="anthropic"))
    assert refused.value.code == "not_configured"
    assert "Anthropic is not set up for your account yet" in refused.value.message
    assert statements and not await Conversation.objects.filter(user=alice).aexists()

    await sync_to_async(configure)(alice, fake_openai, enabled=False)
    with pytest.raises(TurnError, match="is turned off in your Settings"):
        await finished(run_turn(alice, "Hello", provider="openai"))

    await User.objects.filter(pk=alice.pk).aupdate(is_active=False)
    with pytest.raises(TurnError, match="This account has been deactivated"):
        await finished(run_turn(alice, "Hello", provider="openai"))
    assert not await Message.objects.filter(conversation__user=alice).aexists()


async def test_the_cap_on_streaming_replies_is_read_in_the_same_statement(
    alice: User, fake_openai: FakeOpenAI, statements: list[str], settings: Any
) -> None:
    await sync_to_async(configure)(alice, fake_openai)
    await swept()
    settings.LLM_MAX_CONCURRENT_REPLIES = 1
    conversation = await Conversation.objects.acreate(user=alice, title="busy")
    await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", provider="openai"
    )
    with pytest.raises(TurnError, match="You already have 1 replies being written") as refused:
        await finished(run_turn(alice, "Hello", provider="openai"))
    assert refused.value.code == "busy"
    # A row left by a dead process (older than the live window) holds no slot.
    await Message.objects.filter(conversation=conversation).aupdate(
        updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    fake_openai.reply("Fine.")
    assert (await finished(run_turn(alice, "Hello", provider="openai"))).status == "complete"


async def test_what_the_async_path_does_not_take_goes_the_thread_path(
    alice: User,
    fake_openai: FakeOpenAI,
    thread_starts: list[turn_trips.Ask],
    settings: Any,
) -> None:
    await sync_to_async(configure)(alice, fake_openai)
    await swept()
    fake_openai.reply("One.")
    first = await finished(run_turn(alice, "Hello", provider="openai"))
    assert thread_starts == []
    fake_openai.reply("Two.")
    # A second message in that conversation reads its history: the thread path.
    await finished(
        run_turn(alice, "Again", provider="openai", conversation_id=first.conversation_id)
    )
    settings.LLM_DEFAULT_MONTHLY_BUDGET = "5"  # a budget reserves against what is left
    fake_openai.reply("Three.")
    await finished(run_turn(alice, "Hello", provider="openai"))
    assert len(thread_starts) == 2


async def test_a_rate_limited_turn_is_refused_before_the_statement(
    alice: User, fake_openai: FakeOpenAI, statements: list[str], settings: Any
) -> None:
    await sync_to_async(configure)(alice, fake_openai)
    await swept()
    settings.LLM_RATE_LIMIT = "1/m"
    fake_openai.reply("One.")
    await finished(run_turn(alice, "Hello", provider="openai"))
    ran = len(statements)
    with pytest.raises(TurnError, match="You have sent 1 messages in the last minute") as refused:
        await finished(run_turn(alice, "Hello", provider="openai"))
    assert refused.value.code == "rate_limited" and refused.value.retry_after
    assert len(statements) == ran


async def test_the_token_lookup_is_one_statement_and_touches_last_used_once_a_minute(
    alice: User, statements: list[str]
) -> None:
    token, raw = await sync_to_async(ApiToken.issue)(alice, "sdk")
    assert (await ApiToken.aauthenticate(raw)) == alice
    await token.arefresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    assert (await ApiToken.aauthenticate(raw)) == alice
    await token.arefresh_from_db()
    assert token.last_used_at == first_use  # not written again within the minute
    assert len(statements) == 2
    assert await ApiToken.aauthenticate(raw + "x") is None
    assert await ApiToken.aauthenticate("not-a-token") is None
    await User.objects.filter(pk=alice.pk).aupdate(is_active=False)
    assert await ApiToken.aauthenticate(raw) is None
    await token.adelete()
    await User.objects.filter(pk=alice.pk).aupdate(is_active=True)
    assert await ApiToken.aauthenticate(raw) is None  # revoked: refused at once
