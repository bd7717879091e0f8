"""The MQTT bridge against the real broker at MQTT_URL (Mosquitto in CI).

That broker lets anyone in, so these tests cover what the bridge does with a request;
tests/security/test_mqtt_broker.py covers who may ask and read, on a broker with an ACL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from django.conf import settings

from accounts.models import User
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
    username: str
    device_id: str

    async def ask(self, **request: Any) -> list[dict[str, Any]]:
        await self.send(json.dumps(request).encode())
        return await self.frames()

    async def send(self, payload: bytes) -> None:
        topic = f"{self.prefix}/{self.username}/{self.device_id}/request"
        await self.client.publish(topic, payload, qos=1)

    async def frames(self) -> list[dict[str, Any]]:
        """One request's frames, up to its done or error frame."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                frames.append(json.loads(message.payload))
                if frames[-1]["type"] in ("done", "error"):
                    return frames
        return frames

    async def timed_frames(self, count: int) -> list[tuple[float, dict[str, Any]]]:
        """Every frame, with when it came, until `count` requests have ended."""
        frames: list[tuple[float, dict[str, Any]]] = []
        async with asyncio.timeout(15):
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                frames.append((time.monotonic(), json.loads(message.payload)))
                if sum(f["type"] in ("done", "error") for _, f in frames) == count:
                    return frames
        return frames


@dataclass
class Broker:
    address: BrokerAddress
    prefix: str
    bridge: Bridge | None = None

    @asynccontextmanager
    async def bridged(self, **limits: int) -> AsyncIterator[Bridge]:
        async with aiomqtt.Client(self.address.hostname, self.address.port) as bridge_client:
            bridge = Bridge(bridge_client, self.prefix, **limits)
            await bridge.subscribe()
            listening = asyncio.create_task(bridge.listen())
            try:
                yield bridge
            finally:
                listening.cancel()

    @asynccontextmanager
    async def device(self, username: str, device_id: str) -> AsyncIterator[Device]:
        async with aiomqtt.Client(self.address.hostname, self.address.port) as device_client:
            await device_client.subscribe(f"{self.prefix}/{username}/{device_id}/response", qos=1)
            yield Device(device_client, self.prefix, username, device_id)


@pytest.fixture
def broker() -> Broker:
    # A prefix of its own isolates concurrent test runs on the shared broker.
    return Broker(broker_or_skip(), f"coppertone-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def device(broker: Broker, replies_end: None) -> AsyncIterator[Device]:
    async with broker.bridged(), broker.device("alice", "kitchen") as kitchen:
        yield kitchen


def use_fake_openai(user: User, fake_openai: FakeOpenAI) -> None:
    config = ProviderConfig(
        user=user, kind="openai_compatible", base_url=fake_openai.base_url, model="fake-model"
    )
    config.set_api_key(fake_openai.api_key)
    config.save()
    user.default_provider = "openai_compatible"
    user.save()


@pytest.fixture
def alice_ready(alice: User, fake_openai: FakeOpenAI) -> User:
    use_fake_openai(alice, fake_openai)
    return alice


@pytest.fixture
def bob_ready(bob: User, fake_openai: FakeOpenAI) -> User:
    use_fake_openai(bob, fake_openai)
    return bob


async def test_device_gets_a_streamed_reply_and_history_carries_over(
    device: Device, alice_ready: User, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Tea is ready.", chunks=["Tea ", "is ", "ready."])
    frames = await device.ask(message="Is tea ready?", session="morning", request_id="r1")
    # Deltas that arrive together may be published as one.
    assert {f["type"] for f in frames[:-1]} == {"delta"} and frames[-1]["type"] == "done"
    assert "".join(f["text"] for f in frames[:-1]) == "Tea is ready."
    assert all(f["request_id"] == "r1" for f in frames)
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == "Tea is ready."

    fake_openai.reply("Still ready.")
    frames = await device.ask(message="And now?", session="morning", request_id="r2")
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
    assert conversations[0].user_id == alice_ready.pk
    assert await Message.objects.filter(conversation=conversations[0]).acount() == 4


async def test_a_topic_user_without_an_account_is_refused_in_words(
    broker: Broker, alice_ready: User, replies_end: None
) -> None:
    async with broker.bridged(), broker.device("mallory", "kitchen") as stranger:
        frames = await stranger.ask(message="hi", request_id="r3")
    assert frames == [
        {
            "request_id": "r3",
            "type": "error",
            "error": {"code": "unauthenticated", "message": frames[0]["error"]["message"]},
        }
    ]
    assert "'mallory'" in frames[0]["error"]["message"]


async def test_an_inactive_user_is_refused(device: Device, alice_ready: User) -> None:
    alice_ready.is_active = False
    await alice_ready.asave()
    frames = await device.ask(message="hi", request_id="r3")
    assert frames[0]["error"]["code"] == "unauthenticated"


async def test_malformed_requests_get_an_error_frame(device: Device, alice_ready: User) -> None:
    await device.send(b"not json")
    frames = await device.frames()
    assert frames[0]["type"] == "error" and frames[0]["error"]["code"] == "bad_request"
    assert frames[0]["request_id"] is None

    frames = await device.ask(request_id="r4")
    assert (
        frames[0]["error"]["code"] == "bad_request" and "message" in frames[0]["error"]["message"]
    )
    assert frames[0]["request_id"] == "r4"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("message", 42, '"message"'),
        ("message", ["hi"], '"message"'),
        ("session", 7, '"session"'),
        ("session", "s" * 101, '"session"'),
        ("provider", [1], '"provider"'),
        ("provider", {"kind": "openai"}, '"provider"'),
        ("model", 3.5, '"model"'),
        ("model", "m" * 201, '"model"'),
    ],
)
async def test_a_field_of_the_wrong_type_is_named_in_an_error_frame(
    device: Device, alice_ready: User, field: str, value: Any, words: str
) -> None:
    request = {"message": "hi", "request_id": "r6", field: value}
    frames = await device.ask(**request)
    assert frames == [
        {
            "request_id": "r6",
            "type": "error",
            "error": {"code": "bad_request", "message": frames[0]["error"]["message"]},
        }
    ]
    assert words in frames[0]["error"]["message"]
    assert not await Message.objects.aexists()


@pytest.mark.parametrize("request_id", [{"id": 1}, True, "r" * 101])
async def test_an_unusable_request_id_is_refused_with_a_null_id(
    device: Device, alice_ready: User, request_id: Any
) -> None:
    frames = await device.ask(message="hi", request_id=request_id)
    assert frames[0]["request_id"] is None and '"request_id"' in frames[0]["error"]["message"]


async def test_a_numeric_request_id_comes_back_as_a_string(
    device: Device, alice_ready: User, fake_openai: FakeOpenAI
) -> None:
    frames = await device.ask(message="hi", request_id=7)
    assert frames[-1]["type"] == "done" and {f["request_id"] for f in frames} == {"7"}


async def test_an_oversized_message_is_refused_before_any_upstream_call(
    device: Device, alice_ready: User, fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_MESSAGE_CHARS = 100
    frames = await device.ask(message="x" * 101, request_id="r7")
    assert frames[0]["error"]["code"] == "too_large"
    frames = await device.ask(message="x" * 5000, request_id="r8")  # over 6 x 100 + 4 KiB
    assert frames[0]["error"]["code"] == "too_large" and frames[0]["request_id"] is None
    assert fake_openai.chat_requests == []


async def test_one_user_gets_at_most_their_share_and_is_told_busy(
    broker: Broker, alice_ready: User, fake_openai: FakeOpenAI, replies_end: None
) -> None:
    fake_openai.reply("Slowly.", chunks=["Slo", "wly."], delay=0.3)
    async with (
        broker.bridged(max_concurrent=4, max_per_user=1),
        broker.device("alice", "kitchen") as kitchen,
    ):
        await kitchen.send(json.dumps({"message": "one", "request_id": "a1"}).encode())
        await asyncio.sleep(0.1)
        await kitchen.send(
            json.dumps({"message": "two", "session": "other", "request_id": "a2"}).encode()
        )
        frames = [frame for _, frame in await kitchen.timed_frames(2)]
    ends = {f["request_id"]: f for f in frames if f["type"] in ("done", "error")}
    assert ends["a1"]["type"] == "done"
    assert ends["a2"]["type"] == "error" and ends["a2"]["error"]["code"] == "busy"
    assert len(fake_openai.chat_requests) == 1


async def test_requests_beyond_the_bridge_limit_wait_for_a_free_slot(
    broker: Broker, alice_ready: User, bob_ready: User, fake_openai: FakeOpenAI, replies_end: None
) -> None:
    fake_openai.reply("Slowly.", chunks=["Slo", "wly."], delay=0.3)
    async with (
        broker.bridged(max_concurrent=1),
        broker.device("alice", "kitchen") as kitchen,
        broker.device("bob", "garage") as garage,
    ):
        await kitchen.send(json.dumps({"message": "one", "request_id": "a1"}).encode())
        await asyncio.sleep(0.1)
        await garage.send(json.dumps({"message": "two", "request_id": "b1"}).encode())
        alice_frames, bob_frames = await asyncio.gather(
            kitchen.timed_frames(1), garage.timed_frames(1)
        )
    assert alice_frames[-1][1]["type"] == "done" and bob_frames[-1][1]["type"] == "done"
    # bob's request waited for alice's to end, then was answered in full.
    assert bob_frames[0][0] >= alice_frames[-1][0]


async def test_a_retained_request_is_not_answered(
    broker: Broker, alice_ready: User, fake_openai: FakeOpenAI, replies_end: None
) -> None:
    async with broker.device("alice", "kitchen") as kitchen:
        topic = f"{broker.prefix}/alice/kitchen/request"
        await kitchen.client.publish(topic, b'{"message": "again and again"}', qos=1, retain=True)
        try:
            async with broker.bridged():
                frames = await kitchen.ask(message="fresh", request_id="r9")
        finally:
            await kitchen.client.publish(topic, b"", qos=1, retain=True)  # clears it
    assert [f["request_id"] for f in frames] == ["r9"] * len(frames)
    assert len(fake_openai.chat_requests) == 1


async def test_a_provider_failure_is_reported_after_the_user_message_is_kept(
    device: Device, alice_ready: User, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(401)
    frames = await device.ask(message="Lights on", request_id="r5")
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == "error"
    assert frames[-1]["error"]["code"] == "provider_auth"
    assert frames[-1]["message_id"] and frames[-1]["conversation_id"]
    assert await Message.objects.filter(role="user", content="Lights on").aexists()
