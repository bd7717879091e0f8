"""The turn engine against the fake OpenAI server: what is streamed and what is stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import User
from llm.events import TextDelta, TurnError, TurnFinished, TurnStarted
from llm.models import Conversation, DailyUsage, Message, ModelPrice
from llm.turn_trips import sweep_interrupted
from llm.turns import Turn, run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


async def collect(turn: Turn) -> list[Any]:
    return [event async for event in turn]


@sync_to_async
def messages(conversation_id: int) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation_id).order_by("id"))


@sync_to_async
def setup(user: User, fake: FakeOpenAI, **fields: Any) -> None:
    configure(user, fake, **fields)


async def test_turn_streams_deltas_and_stores_the_reply(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    await ModelPrice.objects.acreate(
        provider="openai",
        model="gpt-4o",
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10.00"),
        effective_from=dt.date(2024, 8, 6),
    )
    fake_openai.reply("Hello **there**, Alice.", usage=(1000, 2000))

    events = await collect(run_turn(alice, "Say hello", provider="openai"))

    started, *deltas, finished = events
    assert isinstance(started, TurnStarted) and started.provider == "openai"
    assert started.model == "gpt-4o"
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas) == "Hello **there**, Alice."
    assert isinstance(finished, TurnFinished)
    assert finished.status == "complete"
    assert finished.html == "<p>Hello <strong>there</strong>, Alice.</p>\n"
    assert finished.cost == Decimal("0.022500")
    assert (finished.input_tokens, finished.output_tokens) == (1000, 2000)

    user_msg, reply = await messages(started.conversation_id)
    assert (user_msg.role, user_msg.content) == ("user", "Say hello")
    assert reply.status == "complete" and reply.content == "Hello **there**, Alice."
    assert reply.reply_to_id == user_msg.pk and reply.cost == Decimal("0.022500")
    assert reply.ttft_ms is not None and reply.latency_ms is not None
    conversation = await Conversation.objects.aget(pk=started.conversation_id)
    assert conversation.title == "Say hello"
    usage = await DailyUsage.objects.aget(user=alice)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 1000, 2000)
    assert usage.cost == Decimal("0.022500")
    # The provider was sent the question.
    assert fake_openai.chat_requests[-1].json["messages"][-1] == {
        "role": "user",
        "content": "Say hello",
    }


async def test_user_message_survives_a_provider_error(alice: User, fake_openai: FakeOpenAI) -> None:
    await setup(alice, fake_openai)
    fake_openai.fail(500)

    *_, finished = await collect(run_turn(alice, "Are you there?", provider="openai"))

    assert finished.status == "error"
    assert finished.error.code == "provider_unavailable"
    user_msg, reply = await messages(finished.conversation_id)
    assert user_msg.content == "Are you there?"
    assert reply.status == "error" and reply.error_code == "provider_unavailable"
    assert reply.error_message
    usage = await DailyUsage.objects.aget(user=alice)
    assert (usage.requests, usage.errors) == (1, 1)


async def test_error_mid_stream_keeps_the_partial_text(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    fake_openai.scenario("error_midstream", text="abcdefghijklmnop")

    events = await collect(run_turn(alice, "Go", provider="openai"))

    finished = events[-1]
    assert finished.status == "error" and finished.error is not None
    assert finished.content == "abcdefgh"
    reply = (await messages(finished.conversation_id))[-1]
    assert (reply.status, reply.content) == ("error", "abcdefgh")


async def test_stop_stores_the_partial_reply_as_stopped(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply(chunks=[f"w{i} " for i in range(200)], delay=0.05)
    turn = run_turn(alice, "Count slowly", provider="openai")
    seen: list[str] = []
    three = asyncio.Event()

    async def relay() -> None:
        async for event in turn:
            if isinstance(event, TextDelta):
                seen.append(event.text)
                if len(seen) == 3:
                    three.set()

    task = asyncio.create_task(relay())
    await asyncio.wait_for(three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert turn.result is not None and turn.result.status == "stopped"
    assert turn.result.content.startswith("w0 w1 w2 ")
    assert await fake_openai.closed(2.0), "the upstream request was not closed"
    reply = (await messages(turn.result.conversation_id))[-1]
    assert reply.status == "stopped" and reply.content == turn.result.content


async def test_cancel_between_events_is_stored_through_aclosing(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply(chunks=[f"w{i} " for i in range(100)], delay=0.05)
    turn = run_turn(alice, "Count", provider="openai")
    in_body = asyncio.Event()

    async def relay() -> None:
        async with aclosing(turn):
            async for event in turn:
                if isinstance(event, TextDelta):
                    in_body.set()
                    await asyncio.sleep(10)  # the transport is busy sending when Stop lands

    task = asyncio.create_task(relay())
    await asyncio.wait_for(in_body.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert turn.result is not None and turn.result.status == "stopped"
    assert turn.result.content == "w0 "
    reply = (await messages(turn.result.conversation_id))[-1]
    assert (reply.status, reply.content) == ("stopped", "w0 ")


async def test_second_send_while_streaming_is_busy(alice: User, fake_openai: FakeOpenAI) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply(chunks=["a"] * 40, delay=0.05)
    first = run_turn(alice, "One", provider="openai")
    iterator: Any = aiter(first)
    started: Any = await anext(iterator)
    await anext(iterator)  # streaming now

    with pytest.raises(TurnError) as refused:
        await collect(
            run_turn(alice, "Two", provider="openai", conversation_id=started.conversation_id)
        )
    assert refused.value.code == "busy"

    finished: Any = [e async for e in iterator][-1]
    assert finished.status == "complete"
    assert [m.content for m in await messages(started.conversation_id)] == ["One", "a" * 40]


async def test_resend_with_the_same_client_id_returns_the_stored_reply(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply("First answer.")
    client_id = uuid.uuid4()

    first = await collect(run_turn(alice, "Hi", provider="openai", client_message_id=client_id))
    again = await collect(run_turn(alice, "Hi", provider="openai", client_message_id=client_id))
    conversation_id = first[0].conversation_id
    continued = await collect(
        run_turn(alice, "Hi", conversation_id=conversation_id, client_message_id=client_id)
    )

    assert again[-1].message_id == first[-1].message_id == continued[-1].message_id
    assert again[-1].content == continued[-1].content == "First answer."
    assert "".join(e.text for e in again if isinstance(e, TextDelta)) == "First answer."
    assert len(fake_openai.chat_requests) == 1
    assert [m.role for m in await messages(conversation_id)] == ["user", "assistant"]


async def test_history_sends_system_prompt_and_the_newest_messages_that_fit(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    await setup(alice, fake_openai, system_prompt="You are terse.")
    settings.LLM_HISTORY_TOKENS = 60
    first = await collect(run_turn(alice, "x" * 200, provider="openai"))  # ~51 tokens
    conversation_id = first[0].conversation_id
    await collect(
        run_turn(alice, "second question", provider="openai", conversation_id=conversation_id)
    )

    sent = fake_openai.chat_requests[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    contents = [m["content"] for m in sent[1:]]
    assert contents[-1] == "second question"
    assert "x" * 200 not in contents  # the oldest message no longer fits
    assert "Hello from the fake provider." in contents


async def test_provider_not_configured_is_refused_with_a_pointer_to_settings(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    with pytest.raises(TurnError) as refused:
        await collect(run_turn(alice, "Hi", model="claude-sonnet-4-5"))
    assert refused.value.code == "not_configured"
    assert "Anthropic" in refused.value.message and "Settings" in refused.value.message
    assert await Message.objects.acount() == 0


async def test_default_provider_is_used_when_none_is_named(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    alice.default_provider = "openai"
    started, *_ = await collect(run_turn(alice, "Hi"))
    assert started.provider == "openai"


async def test_rate_limit_refuses_past_the_limit(
    alice: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    await setup(alice, fake_openai)
    settings.LLM_RATE_LIMIT = "2/m"
    await collect(run_turn(alice, "1", provider="openai"))
    await collect(run_turn(alice, "2", provider="openai"))
    with pytest.raises(TurnError) as refused:
        await collect(run_turn(alice, "3", provider="openai"))
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60
    assert len(fake_openai.chat_requests) == 2


async def test_budget_spent_refuses_the_turn(alice: User, fake_openai: FakeOpenAI) -> None:
    await setup(alice, fake_openai)
    alice.monthly_budget = Decimal("1.00")
    today = timezone.localdate()
    await DailyUsage.objects.acreate(
        user=alice, day=today, provider="openai", model="gpt-4o", cost=Decimal("1.25")
    )
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    await DailyUsage.objects.acreate(
        user=alice, day=last_month, provider="openai", model="gpt-4o", cost=Decimal("9")
    )

    with pytest.raises(TurnError) as refused:
        await collect(run_turn(alice, "Hi", provider="openai"))
    assert refused.value.code == "budget_exceeded"
    assert "$1.25 of your $1.00" in refused.value.message
    assert fake_openai.chat_requests == []


async def test_bob_cannot_write_into_alices_conversation(
    alice: User, bob: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    await setup(bob, fake_openai)
    first = await collect(run_turn(alice, "Mine", provider="openai"))
    requests_before = len(fake_openai.chat_requests)

    with pytest.raises(TurnError) as refused:
        await collect(run_turn(bob, "Yours?", conversation_id=first[0].conversation_id))
    assert refused.value.code == "not_found"
    assert len(fake_openai.chat_requests) == requests_before
    assert len(await messages(first[0].conversation_id)) == 2


async def test_empty_and_oversized_messages_are_refused(alice: User, settings: Any) -> None:
    settings.LLM_MAX_MESSAGE_CHARS = 10
    with pytest.raises(TurnError) as empty:
        await collect(run_turn(alice, "   "))
    with pytest.raises(TurnError) as large:
        await collect(run_turn(alice, "x" * 11))
    with pytest.raises(TurnError) as unknown:
        await collect(run_turn(alice, "hi", provider="nope"))
    assert (empty.value.code, large.value.code, unknown.value.code) == (
        "bad_request",
        "too_large",
        "bad_request",
    )


async def test_conversation_key_reopens_the_same_conversation(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    one = await collect(run_turn(alice, "a", provider="openai", conversation_key="kitchen"))
    two = await collect(run_turn(alice, "b", provider="openai", conversation_key="kitchen"))
    assert one[0].conversation_id == two[0].conversation_id
    sent = [m["content"] for m in fake_openai.chat_requests[-1].json["messages"]]
    assert sent[0] == "a" and sent[-1] == "b"


async def test_sweep_marks_replies_left_streaming_as_interrupted(alice: User) -> None:
    @sync_to_async
    def leftover() -> Message:
        conversation = Conversation.objects.create(user=alice, title="t")
        return Message.objects.create(
            conversation=conversation, role="assistant", status="streaming", content="half"
        )

    message = await leftover()
    count = await sync_to_async(sweep_interrupted)(timezone.now() + dt.timedelta(seconds=1))

    assert count == 1
    await message.arefresh_from_db()
    assert (message.status, message.content) == ("error", "half")
    assert message.error_message == "interrupted by a server restart"


async def test_progress_is_written_while_streaming(alice: User, fake_openai: FakeOpenAI) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply(chunks=["ab"] * 30, delay=0.05)
    iterator: Any = aiter(run_turn(alice, "Slowly", provider="openai"))
    started: Any = await anext(iterator)
    received = 0
    while received < 25:  # about 1.2 s of streaming
        await anext(iterator)
        received += 1
    await asyncio.sleep(0.2)  # the background write lands

    reply = (await messages(started.conversation_id))[-1]
    assert reply.status == "streaming"
    assert reply.content.startswith("ab") and len(reply.content) < 60

    finished: Any = [e async for e in iterator][-1]
    assert finished.content == "ab" * 30


async def test_a_second_cancel_does_not_lose_the_partial_reply(
    alice: User, fake_openai: FakeOpenAI
) -> None:
    await setup(alice, fake_openai)
    fake_openai.reply(chunks=[f"w{i} " for i in range(100)], delay=0.05)
    turn = run_turn(alice, "Count", provider="openai")
    two = asyncio.Event()

    async def relay() -> None:
        async with aclosing(turn):
            async for event in turn:
                if isinstance(event, TextDelta) and event.text == "w1 ":
                    two.set()

    task = asyncio.create_task(relay())
    await asyncio.wait_for(two.wait(), 5)
    task.cancel()  # Stop...
    await asyncio.sleep(0)
    task.cancel()  # ...and the socket closes while the partial reply is being stored
    with pytest.raises(asyncio.CancelledError):
        await task

    assert turn.result is not None and turn.result.status == "stopped"
    reply = (await messages(turn.result.conversation_id))[-1]
    assert reply.status == "stopped" and reply.content.startswith("w0 w1 ")


async def test_a_key_that_no_longer_decrypts_asks_for_it_again(
    alice: User, bob: User, fake_openai: FakeOpenAI
) -> None:
    @sync_to_async
    def copy_bobs_key_to_alice() -> None:
        mine = configure(alice, fake_openai)
        theirs = configure(bob, fake_openai)
        # Ciphertext is bound to its row: bob's sealed key fails to open as alice's.
        mine.encrypted_key, mine.key_id = theirs.encrypted_key, theirs.key_id
        mine.save()

    await copy_bobs_key_to_alice()
    *_, finished = await collect(run_turn(alice, "Hi", provider="openai"))

    assert finished.status == "error" and finished.error.code == "not_configured"
    assert "enter it again in Settings" in finished.error.message
    assert fake_openai.api_key not in finished.error.message
    assert fake_openai.chat_requests == []
