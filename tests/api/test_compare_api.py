"""Compare: one message to several models, over POST /api/v1/compare and the WebSocket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.models import User
from llm.models import Message
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

THREE = [
    {"provider": "openai", "model": "gpt-4o"},
    {"provider": "anthropic", "model": "claude-sonnet-4-5"},
    {"provider": "gemini", "model": "gemini-2.0-flash"},  # alice has no Gemini key
]


async def post_compare(headers: dict[str, str], **body: Any) -> Any:
    return await AsyncClient().post(
        "/api/v1/compare", json.dumps(body), content_type="application/json", headers=headers
    )


@pytest.fixture
def two_fakes(
    alice: User, alice_auth: dict[str, str], fake_anthropic: FakeAnthropic
) -> dict[str, str]:
    configure(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    return alice_auth


async def test_three_targets_where_one_fails_the_others_finish(
    two_fakes: dict[str, str], fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.reply("GPT says hi.")
    fake_anthropic.reply("Claude says hi.")

    response = await post_compare(two_fakes, message="Say hi", targets=THREE)

    assert response.status_code == 200
    body = response.json()
    gpt, claude, gemini = body["replies"]
    assert (gpt["content"], gpt["status"]) == ("GPT says hi.", "complete")
    assert (claude["content"], claude["provider"]) == ("Claude says hi.", "anthropic")
    assert gemini["provider"] == "gemini" and gemini["error"]["code"] == "not_configured"
    assert "Settings" in gemini["error"]["message"]
    # Each column is its own conversation ("continue with this one" opens it), one compare.
    assert gpt["conversation_id"] != claude["conversation_id"]
    stored = [m async for m in Message.objects.filter(role="assistant").order_by("id")]
    assert {str(m.compare_id) for m in stored} == {body["compare_id"]}


async def test_a_compare_counts_as_n_turns_against_the_rate_limit(
    two_fakes: dict[str, str], settings: Any
) -> None:
    settings.LLM_RATE_LIMIT = "3/m"
    two = THREE[:2]
    assert (await post_compare(two_fakes, message="a", targets=two)).status_code == 200

    refused = await post_compare(two_fakes, message="b", targets=two)  # 2 + 2 > 3

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "counts as 2 messages" in error["message"]
    assert "1 of your 3" in error["message"]
    assert await Message.objects.filter(role="user", content="b").acount() == 0  # none started
    one_more = await AsyncClient().post(
        "/api/v1/chat",
        json.dumps({"message": "c"}),
        content_type="application/json",
        headers=two_fakes,
    )
    assert one_more.status_code == 200  # the refused compare took nothing from the window


async def test_bad_targets_are_refused_in_words(alice_auth: dict[str, str]) -> None:
    for targets, words in [
        ([THREE[0]], "Compare 2 to 4 models"),
        (THREE + THREE[:2], "Compare 2 to 4 models"),
        ([THREE[0], {"provider": "nope"}], "no provider called 'nope'"),
        ([THREE[0], {}], "names neither a provider nor a model"),
        ([THREE[0], {"provider": "local", "model": "a\x00b"}], "without NUL characters"),
    ]:
        response = await post_compare(alice_auth, message="hi", targets=targets)
        assert response.status_code == 400, targets
        assert words in response.json()["error"]["message"]


async def test_compare_streams_every_columns_events_with_its_message_id(
    two_fakes: dict[str, str], fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    fake_openai.reply("One.")
    fake_anthropic.reply("Two.")

    response = await post_compare(two_fakes, message="Go", targets=THREE[:2], stream=True)
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()

    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    starts = [data for name, data in events if name == "start"]
    assert len(starts) == 2 and len({s["compare_id"] for s in starts}) == 1
    for start, text in zip(starts, ["One.", "Two."], strict=True):
        mine = [d for n, d in events if n == "delta" and d["message_id"] == start["message_id"]]
        assert "".join(d["text"] for d in mine) == text
    assert sum(name == "done" for name, _ in events) == 2


async def test_bob_cannot_follow_or_stop_alices_compare_columns(
    two_fakes: dict[str, str], bob_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Mine.")
    body = (await post_compare(two_fakes, message="x", targets=THREE[:2])).json()
    message_id = body["replies"][0]["message_id"]

    client = AsyncClient()
    follow = await client.get(f"/api/v1/replies/{message_id}/events", headers=bob_auth)
    stop = await client.post(f"/api/v1/replies/{message_id}/stop", headers=bob_auth)
    row = await sync_to_async(Message.objects.get)(pk=message_id)

    assert follow.status_code == stop.status_code == 404
    assert row.status == "complete"
