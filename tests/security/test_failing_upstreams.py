"""Acceptance cases about upstreams that fail mid-reply, through the whole engine: a
connection cut after 50 tokens, a malformed stream and an HTML page each end the reply
with an error in words, the text that arrived stored once, nothing doubled."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from accounts.models import User
from llm.events import TextDelta, TurnFinished
from llm.models import Message
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

TOKENS = [f"w{i} " for i in range(100)]


@pytest.fixture
def alice_openai(alice: User, fake_openai: FakeOpenAI, settings: Any) -> FakeOpenAI:
    cache.clear()
    settings.LLM_MAX_RETRIES = 2  # retries may not splice a second reply onto the first
    configure(alice, fake_openai)
    return fake_openai


async def reply(user: User) -> tuple[str, TurnFinished, Message]:
    events = [event async for event in run_turn(user, "Count to a hundred", provider="openai")]
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    end = events[-1]
    assert isinstance(end, TurnFinished)
    return streamed, end, await Message.objects.aget(pk=end.message_id)


async def test_a_connection_cut_after_50_tokens_keeps_those_50_once(
    alice: User, alice_openai: FakeOpenAI
) -> None:
    alice_openai.scenario("drop", chunks=TOKENS)
    streamed, end, stored = await reply(alice)
    assert streamed == "".join(TOKENS[:50])
    assert (stored.status, stored.content) == ("error", streamed)
    assert end.error is not None and end.error.code == "provider_unavailable"
    assert "dropped in the middle of the reply; what arrived is kept" in end.error.message
    assert len(alice_openai.chat_requests) == 1  # never asked again after a token


async def test_a_malformed_stream_ends_with_words_and_keeps_what_came(
    alice: User, alice_openai: FakeOpenAI
) -> None:
    alice_openai.scenario("malformed_json", chunks=TOKENS)
    streamed, end, stored = await reply(alice)
    assert stored.status == "error" and stored.content == streamed
    assert end.error is not None
    assert "could not read (malformed JSON); what arrived is kept" in end.error.message


async def test_an_html_page_is_summarised_never_reflected(
    alice: User, alice_openai: FakeOpenAI
) -> None:
    alice_openai.scenario("html_200")
    streamed, end, stored = await reply(alice)
    assert streamed == "" and stored.status == "error"
    assert end.error is not None
    assert "<" not in end.error.message and "router admin" not in end.error.message
    assert stored.error_message == end.error.message
    assert await sync_to_async(Message.objects.filter(role="assistant").count)() == 1
