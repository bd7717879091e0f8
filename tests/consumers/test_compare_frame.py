"""The WebSocket's compare frame: a start per target, then each column's frames."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from tests.api.test_compare_api import THREE
from tests.consumers.conftest import TIMEOUT, Connect
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_websocket_compare_frame_gives_a_start_per_target(
    alice: User,
    openai_for_alice: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    connect: Connect,
) -> None:
    await sync_to_async(configure)(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    fake_openai = openai_for_alice
    fake_openai.reply("Left.")
    fake_anthropic.reply("Right.")
    socket = await connect(alice)
    await socket.send_json_to(
        {"type": "compare", "text": "Hi", "targets": THREE, "client_message_id": str(uuid.uuid4())}
    )

    frames: list[dict[str, Any]] = []
    while sum(f["type"] in ("done", "error") for f in frames) < 3:
        frames.append(await socket.receive_json_from(timeout=TIMEOUT))

    starts = [f for f in frames if f["type"] == "start"]
    assert len(starts) == 2 and starts[0]["compare_id"] == starts[1]["compare_id"]
    refused = next(f for f in frames if f["type"] == "error")
    assert refused["target"]["provider"] == "gemini" and refused["compare_id"]
    texts = {
        s["provider"]: "".join(
            f["text"] for f in frames if f["type"] == "delta" and f["message_id"] == s["message_id"]
        )
        for s in starts
    }
    assert texts == {"openai": "Left.", "anthropic": "Right."}
