"""A `send` frame that names a preset: the reply uses the preset's settings; someone else's
preset is a not_found error frame and the socket stays usable."""

from __future__ import annotations

import pytest

from accounts.models import User
from llm.models import Message, Preset
from tests.consumers.conftest import TIMEOUT, Connect
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_with_a_preset_uses_its_settings(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    preset = await Preset.objects.acreate(
        user=alice,
        name="Pirate",
        provider="openai",
        model="gpt-4o-mini",
        system_prompt="Talk like a pirate.",
        temperature=1.1,
        max_tokens=50,
    )
    openai_for_alice.reply("Arr.")
    socket = await connect(alice)
    await socket.send_json_to({"type": "send", "text": "Hello", "preset": preset.pk})

    start = await socket.receive_json_from(timeout=TIMEOUT)
    assert (start["type"], start["provider"], start["model"]) == ("start", "openai", "gpt-4o-mini")
    while (frame := await socket.receive_json_from(timeout=TIMEOUT))["type"] != "done":
        assert frame["type"] == "delta"
    sent = openai_for_alice.chat_requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o-mini", 1.1, 50)


async def test_send_with_someone_elses_preset_is_not_found(
    alice: User, bob: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    bobs = await Preset.objects.acreate(user=bob, name="Bob's", provider="openai")
    socket = await connect(alice)
    await socket.send_json_to({"type": "send", "text": "Hello", "preset": bobs.pk})

    frame = await socket.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error" and frame["message_id"] is None
    assert frame["error"]["code"] == "not_found"
    assert "no such preset" in frame["error"]["message"]
    assert not await Message.objects.aexists()
    assert openai_for_alice.chat_requests == []

    await socket.send_json_to({"type": "send", "text": "Hi", "preset": "Bob's"})
    frame = await socket.receive_json_from(timeout=TIMEOUT)
    assert frame["error"] == {"code": "bad_request", "message": "preset must be a number or null."}

    # The socket still answers: the next message goes through.
    openai_for_alice.reply("Hi.")
    await socket.send_json_to({"type": "send", "text": "Hello", "provider": "openai"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "start"
