"""A per-person cap on replies streaming at once (LLM_MAX_CONCURRENT_REPLIES, default 3),
its slot freed when a reply completes, stops or fails, or its process died."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from accounts.models import User
from llm.events import TurnError
from llm.models import Conversation, Message
from llm.turns import run_turn
from tests.consumers.conftest import Connect
from tests.consumers.test_chat_consumer import receive, send_frame, until_end
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]


async def start(socket: Any, text: str) -> dict[str, Any]:
    await socket.send_json_to(send_frame(text))
    frame = await receive(socket)
    while frame["type"] == "delta":  # another reply's text, interleaved
        frame = await receive(socket)
    return frame


async def test_a_fourth_reply_waits_for_a_slot(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 300, chunks=["word "] * 300, delay=0.03)
    socket = await connect(alice)
    started = [await start(socket, f"Reply {i}") for i in range(3)]
    assert [f["type"] for f in started] == ["start"] * 3

    refused = await start(socket, "One more")
    assert refused["type"] == "error" and refused["error"]["code"] == "busy"
    assert "3 replies being written" in refused["error"]["message"]

    await socket.send_json_to({"type": "stop", "message_id": started[0]["message_id"]})
    while True:  # until the stopped reply's end has gone by
        frame = await receive(socket)
        if frame["type"] == "done" and frame["message_id"] == started[0]["message_id"]:
            break
    again = await start(socket, "Now there is room")
    assert again["type"] == "start"


@sync_to_async
def left_by_a_dead_process(user: User, count: int) -> None:
    conversation = Conversation.objects.create(user=user, title="old")
    for _ in range(count):
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    Message.objects.filter(conversation=conversation).update(updated_at=long_ago)


async def test_rows_left_streaming_by_a_dead_process_hold_no_slot(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("Fine.")
    await left_by_a_dead_process(alice, 3)
    socket = await connect(alice)
    assert (await start(socket, "Hello"))["type"] == "start"
    _, done = await until_end(socket)
    assert done["status"] == "complete"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.parametrize("async_database", [True, False], ids=["async pool", "thread path"])
async def test_ten_starts_at_the_same_moment_take_only_the_free_slots(
    alice: User, openai_for_alice: FakeOpenAI, settings: Any, async_database: bool
) -> None:
    settings.LLM_ASYNC_DATABASE = async_database
    openai_for_alice.reply("word " * 30, chunks=["word "] * 30, delay=0.02)

    decided: list[str] = []
    all_decided = asyncio.Event()

    def decide(outcome: str) -> None:
        decided.append(outcome)
        if len(decided) == 10:
            all_decided.set()

    async def first_event(text: str) -> None:
        turn = run_turn(alice, text, provider="openai")
        try:
            async for _event in turn:  # TurnStarted: it holds a slot until all have tried
                decide("started")
                await all_decided.wait()
                break
        except TurnError as refused:
            decide(refused.code)
        finally:
            await turn.aclose()

    await asyncio.wait_for(asyncio.gather(*(first_event(f"q{i}") for i in range(10))), 30)
    assert decided.count("started") == 3, decided  # the default cap, never more
    assert decided.count("busy") == 7
