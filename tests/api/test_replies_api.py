"""GET /api/v1/replies/{id}/events and POST /api/v1/replies/{id}/stop (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.test import AsyncClient

from accounts.models import User
from llm.models import Message
from tests.api.test_chat_api import post_chat
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

WORDS = [f"w{i} " for i in range(40)]


Event = tuple[int, str, Any]


async def read_events(response: Any, stop_after_deltas: int = 0) -> list[Event]:
    """SSE events as (id, name, data) to the end, or until that many deltas came."""
    events: list[Event] = []
    buffer = ""
    stream = response.streaming_content
    async for chunk in stream:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            seq = int(lines["id"])  # every event of a reply has one
            events.append((seq, lines["event"], json.loads(lines["data"])))
        if stop_after_deltas and sum(e[1] == "delta" for e in events) >= stop_after_deltas:
            await stream.aclose()
            break
    return events


async def start_reply(headers: dict[str, str]) -> tuple[int, list[Event]]:
    """Start a streamed reply, read up to its second delta, and leave (the reply runs on)."""
    response = await post_chat(AsyncClient(), headers, message="Count", stream=True)
    assert response.status_code == 200
    seen = await read_events(response, stop_after_deltas=2)
    return seen[0][2]["message_id"], seen


def text(events: list[Any]) -> str:
    return "".join(data["text"] for _seq, name, data in events if name == "delta")


async def test_following_with_last_event_id_resumes_without_gaps_or_repeats(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("".join(WORDS), chunks=WORDS, delay=0.02)
    message_id, seen = await start_reply(alice_auth)
    last_id = seen[-1][0]

    response = await AsyncClient().get(
        f"/api/v1/replies/{message_id}/events",
        headers={**alice_auth, "Last-Event-ID": str(last_id)},
    )
    assert response["Content-Type"].startswith("text/event-stream")
    rest = await read_events(response)

    assert rest[-1][1] == "done" and rest[-1][2]["status"] == "complete"
    ids = [seq for seq, _n, _d in rest]
    assert ids == sorted(set(ids)) and ids[0] > last_id
    row = await Message.objects.aget(pk=message_id)
    assert text(seen) + text(rest) == row.content == "".join(WORDS)
    assert rest[-1][0] == row.seq


async def test_following_a_finished_reply_gives_its_end(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Short.")
    response = await post_chat(AsyncClient(), alice_auth, message="Hi")
    message_id = response.json()["message_id"]
    row = await Message.objects.aget(pk=message_id)

    events = await read_events(
        await AsyncClient().get(f"/api/v1/replies/{message_id}/events?after=0", headers=alice_auth)
    )
    assert events[-1][1] == "done" and events[-1][2]["content"] == "Short."
    assert events[-1][0] == row.seq


async def test_stop_over_http_ends_the_reply_and_returns_how_it_ended(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("word " * 300, chunks=["word "] * 300, delay=0.03)
    message_id, seen = await start_reply(alice_auth)

    response = await AsyncClient().post(f"/api/v1/replies/{message_id}/stop", headers=alice_auth)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "stopped" and body["message_id"] == message_id
    row = await Message.objects.aget(pk=message_id)
    assert row.status == "stopped" and row.content == body["content"]
    assert row.content.startswith(text(seen))


async def test_a_streaming_message_in_the_detail_carries_its_seq(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("".join(WORDS), chunks=WORDS, delay=0.05)
    message_id, _ = await start_reply(alice_auth)
    await asyncio.sleep(0.7)  # past one progress write
    row = await Message.objects.aget(pk=message_id)
    detail = (
        await AsyncClient().get(f"/api/v1/conversations/{row.conversation_id}", headers=alice_auth)
    ).json()
    shown = detail["messages"][-1]
    assert shown["status"] == "streaming" and shown["seq"] > 1
    # The content is the text up to that seq: following after it gives the rest exactly.
    events = await read_events(
        await AsyncClient().get(
            f"/api/v1/replies/{message_id}/events?after={shown['seq']}", headers=alice_auth
        )
    )
    final = await Message.objects.aget(pk=message_id)
    assert shown["content"] + text(events) == final.content


async def test_bob_gets_404_for_alices_reply(
    alice: User, alice_auth: dict[str, str], bob_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("word " * 100, chunks=["word "] * 100, delay=0.02)
    message_id, _ = await start_reply(alice_auth)
    client = AsyncClient()
    events = await client.get(f"/api/v1/replies/{message_id}/events", headers=bob_auth)
    stop = await client.post(f"/api/v1/replies/{message_id}/stop", headers=bob_auth)
    missing = await client.get("/api/v1/replies/999999/events", headers=alice_auth)
    for response in (events, stop, missing):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    row = await Message.objects.aget(pk=message_id)
    assert row.status == "streaming"  # bob's stop did nothing


async def test_bad_last_event_id_is_explained(alice_auth: dict[str, str]) -> None:
    response = await AsyncClient().get(
        "/api/v1/replies/1/events", headers={**alice_auth, "Last-Event-ID": "soon"}
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]["message"]
