"""POST /api/v1/chat (JSON and SSE), conversations, usage and health, as API.md says."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import AsyncClient

from accounts.models import User
from llm.models import Conversation, Message
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]


async def post_chat(client: AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post(
        "/api/v1/chat", json.dumps(body), content_type="application/json", headers=headers
    )


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def read_stream(response: Any) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


async def test_chat_json_returns_the_stored_reply(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Bonjour.", usage=(7, 3))
    response = await post_chat(AsyncClient(), alice_auth, message="Say hi in French")

    assert response.status_code == 200
    body = response.json()
    assert body["content"] == "Bonjour." and body["status"] == "complete"
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o")
    assert body["usage"] == {"input_tokens": 7, "output_tokens": 3}
    assert set(body) >= {"conversation_id", "message_id", "cost", "ttft_ms", "latency_ms"}
    stored = await Message.objects.aget(pk=body["message_id"])
    assert stored.content == "Bonjour."


async def test_chat_sse_sends_start_deltas_and_done(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(chunks=["**Hi", "** there"])
    response = await post_chat(AsyncClient(), alice_auth, message="Hello", stream=True)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = sse_events(await read_stream(response))
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    assert events[0][1]["message_id"] == events[-1][1]["message_id"]
    # Deltas that arrive together may leave as one event.
    assert "".join(data["text"] for name, data in events if name == "delta") == "**Hi** there"
    done = events[-1][1]
    assert done["status"] == "complete" and done["content"] == "**Hi** there"
    assert done["html"] == "<p><strong>Hi</strong> there</p>\n"


async def test_provider_failure_is_502_with_the_chat_body(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.scenario("error_midstream", text="abcdefgh")
    response = await post_chat(AsyncClient(), alice_auth, message="Go")

    assert response.status_code == 502
    body = response.json()
    assert body["status"] == "error" and body["content"] == "abcd"
    assert body["error"]["code"].startswith("provider_") and body["error"]["message"]
    assert await Message.objects.filter(role="user", content="Go").aexists()


async def test_sse_provider_failure_ends_with_an_error_event(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(401)
    response = await post_chat(AsyncClient(), alice_auth, message="Go", stream=True)

    events = sse_events(await read_stream(response))
    assert [name for name, _ in events] == ["start", "error"]
    assert events[-1][1]["error"]["code"] == "provider_auth"
    assert events[-1][1]["message_id"] == events[0][1]["message_id"]


async def test_refusals_are_4xx_with_the_error_body_alone(
    alice_auth: dict[str, str], settings: Any
) -> None:
    client = AsyncClient()
    empty = await post_chat(client, alice_auth, message="")
    unconfigured = await post_chat(client, alice_auth, message="hi", provider="anthropic")
    wrong_type = await post_chat(client, alice_auth, message="hi", conversation_id="7")
    settings.LLM_RATE_LIMIT = "1/m"
    await post_chat(client, alice_auth, message="one")
    limited = await post_chat(client, alice_auth, message="two")

    assert empty.status_code == 400 and empty.json()["error"]["code"] == "bad_request"
    assert unconfigured.status_code == 409
    assert unconfigured.json() == {
        "error": {"code": "not_configured", "message": unconfigured.json()["error"]["message"]}
    }
    assert wrong_type.status_code == 400
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0


async def test_resend_with_client_message_id_gives_one_reply(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client, client_id = AsyncClient(), str(uuid.uuid4())
    first = await post_chat(client, alice_auth, message="Once", client_message_id=client_id)
    again = await post_chat(client, alice_auth, message="Once", client_message_id=client_id)

    assert first.json()["message_id"] == again.json()["message_id"]
    assert len(fake_openai.chat_requests) == 1
    assert await Message.objects.acount() == 2


async def test_unauthenticated_and_csrf(alice: User) -> None:
    anonymous = await post_chat(AsyncClient(), {}, message="hi")
    assert anonymous.status_code == 401
    session = AsyncClient(enforce_csrf_checks=True)
    await session.aforce_login(alice)
    no_csrf = await post_chat(session, {}, message="hi")
    assert no_csrf.status_code == 403


async def test_conversations_list_detail_and_delete(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = AsyncClient()
    one = (await post_chat(client, alice_auth, message="First topic")).json()
    await post_chat(client, alice_auth, message="More", conversation_id=one["conversation_id"])
    await post_chat(client, alice_auth, message="Second topic")

    listed = (await client.get("/api/v1/conversations?limit=1", headers=alice_auth)).json()
    assert listed["total"] == 2 and len(listed["conversations"]) == 1
    assert listed["conversations"][0]["title"] == "Second topic"  # newest first

    url = f"/api/v1/conversations/{one['conversation_id']}"
    detail = (await client.get(url + "?limit=3&offset=1", headers=alice_auth)).json()
    assert detail["title"] == "First topic" and detail["total_messages"] == 4
    assert [m["role"] for m in detail["messages"]] == ["assistant", "user", "assistant"]
    assert detail["messages"][1]["content"] == "More"
    assert detail["messages"][0]["usage"]["output_tokens"] > 0

    deleted = await client.delete(url, headers=alice_auth)
    assert deleted.status_code == 204
    assert not await Conversation.objects.filter(pk=one["conversation_id"]).aexists()
    gone = await client.get(url, headers=alice_auth)
    assert gone.status_code == 404


async def test_bob_gets_404_for_alices_conversation_everywhere(
    alice_auth: dict[str, str], bob_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = AsyncClient()
    mine = (await post_chat(client, alice_auth, message="Private")).json()
    url = f"/api/v1/conversations/{mine['conversation_id']}"
    requests_before = len(fake_openai.chat_requests)

    assert (await client.get(url, headers=bob_auth)).status_code == 404
    assert (await client.delete(url, headers=bob_auth)).status_code == 404
    sent = await post_chat(
        client, bob_auth, message="Mine now", conversation_id=mine["conversation_id"]
    )
    assert sent.status_code == 404 and sent.json()["error"]["code"] == "not_found"
    listed = (await client.get("/api/v1/conversations", headers=bob_auth)).json()
    assert listed == {"conversations": [], "total": 0}
    assert len(fake_openai.chat_requests) == requests_before
    assert await Conversation.objects.filter(pk=mine["conversation_id"]).aexists()


async def test_usage_sums_tokens_and_cost_per_day_and_provider(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    client = AsyncClient()
    fake_openai.reply("ok", usage=(100, 20))
    await post_chat(client, alice_auth, message="a")
    await post_chat(client, alice_auth, message="b")

    usage = (await client.get("/api/v1/usage?days=7", headers=alice_auth)).json()
    assert usage["total"]["requests"] == 2
    assert (usage["total"]["input_tokens"], usage["total"]["output_tokens"]) == (200, 40)
    assert usage["per_provider"][0]["provider"] == "openai"
    assert len(usage["per_day"]) == 1
    bad = await client.get("/api/v1/usage?days=abc", headers=alice_auth)
    assert bad.status_code == 400


async def test_health_reports_each_part(db: None) -> None:
    response = await AsyncClient().get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}


async def test_health_names_the_failing_part(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},  # nothing listens there
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        response = await AsyncClient().get("/api/v1/health")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["channel_layer"].startswith("unavailable")
    assert "channel layer" in body["error"]["message"]
