"""A `send` frame with `attachments`: the files go to the provider with the message and
are linked to it; another person's file, a malformed list and a model without vision are
error frames before any upstream call, and the socket stays usable."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from llm import attachments
from llm.models import Attachment, Message
from tests.attachment_bytes import png
from tests.consumers.conftest import TIMEOUT, Connect
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

store = sync_to_async(attachments.store)


async def _until_done(socket: Any) -> dict[str, Any]:
    while (frame := await socket.receive_json_from(timeout=TIMEOUT))["type"] != "done":
        assert frame["type"] in ("start", "delta"), frame
    frame_done: dict[str, Any] = frame
    return frame_done


async def test_send_with_an_image_and_a_text_file(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    image = await store(alice, "shot.png", png())
    notes = await store(alice, "notes.txt", b"buy milk")
    openai_for_alice.reply("A white square and a list.")
    socket = await connect(alice)

    await socket.send_json_to(
        {
            "type": "send",
            "text": "What are these?",
            "provider": "openai",
            "attachments": [image.pk, notes.pk],
        }
    )
    await _until_done(socket)

    sent = openai_for_alice.chat_requests[-1].json["messages"][-1]
    assert sent["content"] == [
        {"type": "text", "text": "What are these?\n\nAttached file notes.txt:\n```\nbuy milk\n```"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(png()).decode()},
        },
    ]
    asked = await Message.objects.aget(role="user")
    linked = [a.pk async for a in Attachment.objects.filter(message=asked).order_by("pk")]
    assert linked == [image.pk, notes.pk]


async def test_send_with_someone_elses_file_is_not_found(
    alice: User, bob: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    bobs = await store(bob, "bob.txt", b"private")
    socket = await connect(alice)

    await socket.send_json_to({"type": "send", "text": "Read it", "attachments": [bobs.pk]})
    frame = await socket.receive_json_from(timeout=TIMEOUT)

    assert frame == {
        "type": "error",
        "message_id": None,
        "error": {"code": "not_found", "message": "That file does not exist, or it was deleted."},
    }
    assert not await Message.objects.aexists()
    assert openai_for_alice.chat_requests == []

    await socket.send_json_to({"type": "send", "text": "Hi", "attachments": "bob.txt"})
    frame = await socket.receive_json_from(timeout=TIMEOUT)
    assert frame["error"]["code"] == "bad_request"
    assert "attachments must be a list of file ids" in frame["error"]["message"]

    openai_for_alice.reply("Hi.")
    await socket.send_json_to({"type": "send", "text": "Hi", "provider": "openai"})
    assert (await _until_done(socket))["status"] == "complete"


async def test_send_an_image_to_a_model_without_vision_is_refused_in_words(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    image = await store(alice, "shot.png", png())
    socket = await connect(alice)

    await socket.send_json_to(
        {"type": "send", "text": "What is it?", "model": "gpt-3.5-turbo", "attachments": [image.pk]}
    )
    frame = await socket.receive_json_from(timeout=TIMEOUT)

    assert frame["type"] == "error" and frame["error"]["code"] == "bad_request"
    assert frame["error"]["message"].startswith("gpt-3.5-turbo (OpenAI) cannot read images.")
    assert "gpt-4o" in frame["error"]["message"]
    assert openai_for_alice.chat_requests == []
