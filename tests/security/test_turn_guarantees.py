"""Acceptance cases about every turn, on every transport: an unknown model is named, the
rate limit is one window across transports, the person's message is stored before the
upstream call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import AsyncClient

from accounts.models import ApiToken, User
from llm.events import TurnError, TurnFinished, TurnStarted
from llm.models import Message
from llm.turns import run_turn
from tests.consumers.conftest import Connect
from tests.consumers.test_chat_consumer import receive, send_frame, until_end
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]


@pytest.fixture
def alice_openai(alice: User, fake_openai: FakeOpenAI, settings: Any) -> FakeOpenAI:
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    configure(alice, fake_openai)
    return fake_openai


async def test_an_unknown_model_is_named_in_the_error(
    alice: User, alice_openai: FakeOpenAI
) -> None:
    alice_openai.fail(404)
    finished = None
    async for event in run_turn(alice, "Hi", provider="openai", model="gpt-9-imaginary"):
        if isinstance(event, TurnFinished):
            finished = event
    assert finished is not None and finished.status == "error"
    assert "gpt-9-imaginary" in finished.failure().message


async def test_the_rate_limit_is_one_window_across_transports(
    alice: User, alice_openai: FakeOpenAI, connect: Connect, settings: Any
) -> None:
    settings.LLM_RATE_LIMIT = "2/m"
    alice_openai.reply("Fine.")
    raw = (await sync_to_async(ApiToken.issue)(alice, "t"))[1]
    socket = await connect(alice)
    await socket.send_json_to(send_frame("One, over the WebSocket"))
    _, done = await until_end(socket)
    assert done["type"] == "done"
    chat = await AsyncClient().post(
        "/api/v1/chat",
        json.dumps({"message": "Two, over HTTP", "provider": "openai"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert chat.status_code == 200
    third = await AsyncClient().post(
        "/v1/chat/completions",
        json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "3"}]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(alice_openai.chat_requests) == 2


async def test_the_persons_message_is_stored_before_the_upstream_call(
    alice: User, alice_openai: FakeOpenAI, connect: Connect
) -> None:
    alice_openai.reply("Late.", first_byte_delay=1.0)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Keep me"))
    start = await receive(socket)
    assert start["type"] == "start"
    await asyncio.sleep(0.2)  # the provider has not answered yet
    stored = await Message.objects.filter(role="user").values_list("content", flat=True).afirst()
    assert stored == "Keep me"
    await until_end(socket)


async def test_a_second_send_while_one_streams_is_refused_as_busy(
    alice: User, alice_openai: FakeOpenAI
) -> None:
    alice_openai.reply("word " * 40, chunks=["word "] * 40, delay=0.02)
    first = run_turn(alice, "First", provider="openai")
    events = aiter(first)
    started = await anext(events)
    assert isinstance(started, TurnStarted)
    with pytest.raises(TurnError) as refused:
        async for _ in run_turn(
            alice, "Second", provider="openai", conversation_id=started.conversation_id
        ):
            pass
    assert refused.value.code == "busy"
    async for _ in events:
        pass
