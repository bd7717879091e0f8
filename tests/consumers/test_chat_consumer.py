"""The WebSocket transport, through the real ASGI stack (origin check, session auth)
against the fake OpenAI server."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from llm.models import Conversation, Message, ProviderConfig
from tests.consumers.conftest import TIMEOUT, Connect, open_socket
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


def send_frame(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "send", "text": text, "provider": "openai", **extra}


async def receive(socket: Any) -> dict[str, Any]:
    frame: dict[str, Any] = await socket.receive_json_from(timeout=TIMEOUT)
    return frame


async def until_end(socket: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every frame up to and including the first done or error."""
    frames = []
    while True:
        frame = await receive(socket)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames, frame


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")


async def reply_row(message_id: int) -> Message:
    return await Message.objects.aget(pk=message_id)


async def test_send_streams_start_deltas_and_done(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("Hello **there**, friend.", chunks=["Hello ", "**there**", ", friend."])
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Say hello"))

    start = await receive(socket)
    assert start["type"] == "start"
    assert start["provider"] == "openai"
    assert start["model"] == "gpt-4o"
    frames, done = await until_end(socket)
    assert text_of(frames) == "Hello **there**, friend."
    assert all(f["message_id"] == start["message_id"] for f in frames)
    assert done["type"] == "done"
    assert done["status"] == "complete"
    assert done["html"] == "<p>Hello <strong>there</strong>, friend.</p>\n"
    assert done["usage"]["output_tokens"] > 0
    assert "cost" in done and "latency_ms" in done

    row = await reply_row(start["message_id"])
    assert row.status == "complete"
    assert row.content == "Hello **there**, friend."
    conversation = await Conversation.objects.aget(pk=start["conversation_id"])
    assert conversation.user_id == alice.pk
    assert conversation.title == "Say hello"


async def test_a_burst_of_tokens_arrives_whole_and_in_order(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    pieces = [f"{i}," for i in range(500)]
    openai_for_alice.reply("".join(pieces), chunks=pieces)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Count"))
    start = await receive(socket)
    frames, done = await until_end(socket)
    assert text_of(frames) == "".join(pieces)
    assert done["type"] == "done"
    assert {f["message_id"] for f in frames} == {start["message_id"]}


async def test_stop_keeps_the_partial_reply(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 200, chunks=["word "] * 200, delay=0.05)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Talk for a while"))
    start = await receive(socket)
    received = [await receive(socket) for _ in range(3)]
    assert all(f["type"] == "delta" for f in received)

    await socket.send_json_to({"type": "stop"})
    frames, done = await until_end(socket)
    assert done["type"] == "done"
    assert done["status"] == "stopped"
    assert await openai_for_alice.closed(2)

    shown = text_of(received + frames)
    row = await reply_row(start["message_id"])
    assert row.status == "stopped"
    assert row.content == shown
    assert 0 < len(shown) < len("word " * 200)


async def test_stop_right_after_send_leaves_nothing_streaming(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("Too late.", first_byte_delay=1.0)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Never mind"))
    await socket.send_json_to({"type": "stop"})
    frames, end = await until_end(socket)
    assert end["type"] == "done"
    assert end["status"] == "stopped"
    assert "Too late" not in text_of(frames)
    assert await Message.objects.filter(status="streaming").acount() == 0


async def test_bob_cannot_send_into_alices_conversation(
    alice: User, bob: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    conversation = await Conversation.objects.acreate(user=alice, title="Alice's")
    bob_config = ProviderConfig(user=bob, kind="openai", base_url=openai_for_alice.base_url)
    bob_config.set_api_key(openai_for_alice.api_key)
    await bob_config.asave()

    socket = await connect(bob)
    await socket.send_json_to(send_frame("Let me in", conversation_id=conversation.pk))
    frame = await receive(socket)
    assert frame == {
        "type": "error",
        "message_id": None,
        "error": {"code": "not_found", "message": frame["error"]["message"]},
    }
    assert openai_for_alice.chat_requests == []
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_second_send_while_streaming_is_busy(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 40, chunks=["word "] * 40, delay=0.05)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("First"))
    start = await receive(socket)
    await socket.send_json_to(send_frame("Second", conversation_id=start["conversation_id"]))

    frames, end = await until_end(socket)
    assert end["type"] == "error"
    assert end["error"]["code"] == "busy"
    assert end["message_id"] is None
    assert "Stop" in end["error"]["message"]
    # The first reply goes on undisturbed.
    frames, done = await until_end(socket)
    assert done["type"] == "done" and done["status"] == "complete"
    contents = [
        m async for m in Message.objects.filter(role="user").values_list("content", flat=True)
    ]
    assert contents == ["First"]


async def test_second_socket_into_a_streaming_conversation_is_busy(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 40, chunks=["word "] * 40, delay=0.05)
    first = await connect(alice)
    await first.send_json_to(send_frame("First"))
    start = await receive(first)

    second = await connect(alice)
    await second.send_json_to(send_frame("Second", conversation_id=start["conversation_id"]))
    frame = await receive(second)
    assert frame["type"] == "error"
    assert frame["error"]["code"] == "busy"
    await first.send_json_to({"type": "stop"})
    await until_end(first)


async def test_upstream_error_midstream_keeps_the_text_so_far(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.scenario("drop", "The first half arrives, then the line goes dead.")
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Go"))
    start = await receive(socket)
    frames, end = await until_end(socket)

    assert end["type"] == "error"
    assert end["message_id"] == start["message_id"]
    assert end["error"]["code"].startswith("provider_")
    assert end["error"]["message"]
    shown = text_of(frames)
    assert shown
    row = await reply_row(start["message_id"])
    assert row.status == "error"
    assert row.content == shown
    assert row.error_code == end["error"]["code"]


async def test_refusal_before_the_turn_names_the_fix(alice: User, connect: Connect) -> None:
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Hi", provider="anthropic"))
    frame = await receive(socket)
    assert frame["type"] == "error"
    assert frame["message_id"] is None
    assert frame["error"]["code"] == "not_configured"
    assert "Settings" in frame["error"]["message"]
    assert await Message.objects.acount() == 0


async def test_anonymous_socket_is_closed(db: None) -> None:
    socket = await open_socket(None)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert not connected


async def test_foreign_origin_is_refused(alice: User) -> None:
    socket = await open_socket(alice, origin=(b"origin", b"https://evil.example"))
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert not connected


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ("not json", "not valid JSON"),
        ('{"type": "dance"}', "Unknown frame"),
        ("[1, 2]", "Unknown frame"),
        ('{"type": "send"}', "Type a message"),
        ('{"type": "send", "text": "   "}', "Type a message"),
        ('{"type": "send", "text": "hi", "conversation_id": "seven"}', "conversation_id"),
        ('{"type": "send", "text": "hi", "client_message_id": "nope"}', "UUID"),
    ],
)
async def test_bad_frames_are_explained_and_the_socket_stays_open(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect, frame: str, words: str
) -> None:
    socket = await connect(alice)
    await socket.send_to(text_data=frame)
    answer = await receive(socket)
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "bad_request"
    assert words in answer["error"]["message"]

    openai_for_alice.reply("Still here.")
    await socket.send_json_to(send_frame("Are you there?"))
    frames, done = await until_end(socket)
    assert done["type"] == "done"
    assert text_of(frames) == "Still here."


async def test_binary_frames_are_refused(alice: User, connect: Connect) -> None:
    socket = await connect(alice)
    await socket.send_to(bytes_data=b"\x00\x01")
    answer = await receive(socket)
    assert answer["error"]["code"] == "bad_request"


async def test_resend_with_the_same_client_id_gives_one_reply(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("Only once.")
    socket = await connect(alice)
    frame = send_frame("Once", client_message_id="0b5d2a8e-3c1f-4a8e-9d1e-6f2b7c9a1e55")
    await socket.send_json_to(frame)
    first_frames, first = await until_end(socket)
    await socket.send_json_to(frame)
    again_frames, again = await until_end(socket)

    assert again["message_id"] == first["message_id"]
    assert text_of(again_frames) == "Only once."
    assert len(openai_for_alice.chat_requests) == 1
    assert await Message.objects.acount() == 2


async def test_stop_with_nothing_streaming_is_harmless(alice: User, connect: Connect) -> None:
    socket = await connect(alice)
    await socket.send_json_to({"type": "stop"})
    assert await socket.receive_nothing(timeout=0.2)
