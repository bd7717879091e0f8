"""The MQTT bridge against the real broker at MQTT_URL (Mosquitto in CI)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from django.conf import settings

from accounts.models import ApiToken, User
from llm.models import Conversation, Message, ProviderConfig
from llm.mqtt import Bridge, BrokerAddress
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.mqtt, pytest.mark.django_db(transaction=True)]


def broker_or_skip() -> BrokerAddress:
    address = BrokerAddress.parse(settings.MQTT_URL)
    try:
        socket.create_connection((address.hostname, address.port), timeout=1).close()
    except OSError:
        pytest.skip(f"no MQTT broker at {settings.MQTT_URL}")
    return address


@dataclass
class Device:
    client: aiomqtt.Client
    prefix: str
    device_id: str

    async def ask(self, **request: Any) -> list[dict[str, Any]]:
        await self.send(json.dumps(request).encode())
        return await self.frames()

    async def send(self, payload: bytes) -> None:
        await self.client.publish(f"{self.prefix}/{self.device_id}/request", payload, qos=1)

    async def frames(self) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                frames.append(json.loads(message.payload))
                if frames[-1]["type"] in ("done", "error"):
                    return frames
        return frames


@pytest.fixture
async def device() -> AsyncIterator[Device]:
    address = broker_or_skip()
    prefix = f"coppertone-test-{uuid.uuid4().hex[:8]}"  # isolates concurrent test runs
    async with (
        aiomqtt.Client(address.hostname, address.port) as bridge_client,
        aiomqtt.Client(address.hostname, address.port) as device_client,
    ):
        bridge = Bridge(bridge_client, prefix)
        await bridge.subscribe()
        listening = asyncio.create_task(bridge.listen())
        await device_client.subscribe(f"{prefix}/kitchen/response", qos=1)
        yield Device(device_client, prefix, "kitchen")
        listening.cancel()


@pytest.fixture
def alice_token(alice: User, fake_openai: FakeOpenAI) -> str:
    config = ProviderConfig(
        user=alice, kind="openai_compatible", base_url=fake_openai.base_url, model="fake-model"
    )
    config.set_api_key(fake_openai.api_key)
    config.save()
    alice.default_provider = "openai_compatible"
    alice.save()
    return ApiToken.issue(alice, "kitchen speaker")[1]


async def test_device_gets_a_streamed_reply_and_history_carries_over(
    device: Device, alice_token: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Tea is ready.", chunks=["Tea ", "is ", "ready."])
    frames = await device.ask(
        token=alice_token, message="Is tea ready?", session="morning", request_id="r1"
    )
    # Deltas that arrive together may be published as one.
    assert {f["type"] for f in frames[:-1]} == {"delta"} and frames[-1]["type"] == "done"
    assert "".join(f["text"] for f in frames[:-1]) == "Tea is ready."
    assert all(f["request_id"] == "r1" for f in frames)
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == "Tea is ready."

    fake_openai.reply("Still ready.")
    frames = await device.ask(
        token=alice_token, message="And now?", session="morning", request_id="r2"
    )
    assert frames[-1]["type"] == "done"
    sent = fake_openai.chat_requests[-1].json["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == [
        "Is tea ready?",
        "Tea is ready.",
        "And now?",
    ]
    mqtt_conversations = Conversation.objects.filter(external_key__startswith="mqtt:")
    conversations = [c async for c in mqtt_conversations]
    assert len(conversations) == 1
    assert await Message.objects.filter(conversation=conversations[0]).acount() == 4


async def test_a_bad_token_is_refused_in_words(device: Device, alice_token: str) -> None:
    frames = await device.ask(token="cpt_wrong", message="hi", request_id="r3")
    assert frames == [
        {
            "request_id": "r3",
            "type": "error",
            "error": {"code": "unauthenticated", "message": frames[0]["error"]["message"]},
        }
    ]
    assert "Tokens" in frames[0]["error"]["message"]


async def test_malformed_requests_get_an_error_frame(device: Device, alice_token: str) -> None:
    await device.send(b"not json")
    frames = await device.frames()
    assert frames[0]["type"] == "error" and frames[0]["error"]["code"] == "bad_request"
    assert frames[0]["request_id"] is None

    frames = await device.ask(token=alice_token, request_id="r4")
    assert (
        frames[0]["error"]["code"] == "bad_request" and "message" in frames[0]["error"]["message"]
    )
    assert frames[0]["request_id"] == "r4"


async def test_a_provider_failure_is_reported_after_the_user_message_is_kept(
    device: Device, alice_token: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(401)
    frames = await device.ask(token=alice_token, message="Lights on", request_id="r5")
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == "error"
    assert frames[-1]["error"]["code"] == "provider_auth"
    assert frames[-1]["message_id"] and frames[-1]["conversation_id"]
    assert await Message.objects.filter(role="user", content="Lights on").aexists()
