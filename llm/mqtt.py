"""MQTT transport: devices talk to the engine through a broker (docs/api.md, "MQTT").

A device publishes `{"token", "message", "session", "provider"?, "model"?, "request_id"}` to
`<prefix>/<device_id>/request`; the bridge answers on `<prefix>/<device_id>/response` with
delta frames and a final done or error frame. Each (user, device, session) is one
conversation, so history carries across requests. Like every transport, this module only
translates frames to and from `turns.run_turn`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from accounts.models import ApiToken
from llm import replies
from llm.events import TextDelta, TurnError, TurnFinished
from llm.turns import run_turn

log = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
QOS = 1


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    hostname: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """`mqtt://user:pass@host:1883` or `mqtts://host:8883`."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT_URL must look like mqtt://host:1883, not {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


class BadFrame(Exception):
    """A request the bridge cannot act on; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Request:
    device_id: str
    token: str
    message: str
    session: str
    provider: str | None
    model: str | None
    request_id: str | None

    @classmethod
    def parse(cls, device_id: str, payload: bytes) -> Request:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadFrame(
                'The request is not JSON: send an object like {"message": "hi"}.'
            ) from None
        if not isinstance(data, dict):
            raise BadFrame("The request must be a JSON object.")
        request_id = data.get("request_id")
        request_id = str(request_id) if request_id is not None else None
        message, token = data.get("message"), data.get("token")
        if not isinstance(token, str) or not token:
            raise BadFrame(
                'Add your Coppertone API token as "token" (create one in Settings → Tokens).'
            )
        if not isinstance(message, str) or not message.strip():
            raise BadFrame('Add the text to send as "message".')
        session = data.get("session") or "default"
        return cls(
            device_id=device_id,
            token=token,
            message=message,
            session=str(session)[:100],
            provider=data.get("provider") or None,
            model=data.get("model") or None,
            request_id=request_id,
        )


def request_id_of(payload: bytes) -> str | None:
    """Best effort, so that even a refused frame can be matched by the device."""
    try:
        value = json.loads(payload).get("request_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


class Bridge:
    """Subscribes to every device's request topic and answers each request in its own task."""

    def __init__(self, client: aiomqtt.Client, prefix: str = "coppertone") -> None:
        self.client = client
        self.prefix = prefix
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self.subscribe()
        await self.listen()

    async def subscribe(self) -> None:
        await self.client.subscribe(f"{self.prefix}/+/request", qos=QOS)

    async def listen(self) -> None:
        try:
            async for message in self.client.messages:
                device_id = message.topic.value.split("/")[-2]
                payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                task = asyncio.create_task(self.handle(device_id, bytes(payload)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            for task in self.tasks:
                task.cancel()

    async def publish(self, device_id: str, frame: dict[str, Any]) -> None:
        await self.client.publish(f"{self.prefix}/{device_id}/response", json.dumps(frame), qos=QOS)

    async def handle(self, device_id: str, payload: bytes) -> None:
        if not DEVICE_ID.match(device_id):
            log.warning("ignored a request on a topic with an unusable device id")
            return
        try:
            request = Request.parse(device_id, payload)
        except BadFrame as exc:
            await self.error(device_id, request_id_of(payload), TurnError("bad_request", str(exc)))
            return
        user = await ApiToken.aauthenticate(request.token)
        if user is None:
            error = TurnError(
                "unauthenticated",
                "That token is not valid or was revoked: create a new one in Settings → Tokens.",
            )
            await self.error(device_id, request.request_id, error)
            return
        turn = run_turn(
            user,
            request.message,
            provider=request.provider,
            model=request.model,
            conversation_key=f"mqtt:{device_id}:{request.session}",
        )
        base = {"request_id": request.request_id}
        try:
            # owned: a reply ends with its request here (the bridge stopping, the broker
            # gone), stored as stopped, as before replies outlived their askers.
            async with replies.owned(turn) as reply:
                async for _seq, event in reply.follow():
                    if type(event) is TextDelta:
                        frame = {**base, "type": "delta", "text": event.text}
                        await self.publish(device_id, frame)
                    elif isinstance(event, TurnFinished):
                        # A provider failure ends as an error frame that still carries
                        # the text that came, like the WebSocket's.
                        kind = "error" if event.status == "error" else "done"
                        await self.publish(device_id, {**event.as_dict(), **base, "type": kind})
        except TurnError as exc:
            await self.error(device_id, request.request_id, exc)

    async def error(self, device_id: str, request_id: str | None, error: TurnError) -> None:
        await self.publish(
            device_id, {"request_id": request_id, "type": "error", "error": error.as_dict()}
        )


async def serve(url: str, prefix: str, *, reconnect_delay: float = 1.0) -> None:
    """Run the bridge until cancelled, reconnecting with backoff when the broker goes away."""
    address = BrokerAddress.parse(url)
    delay = reconnect_delay
    while True:
        try:
            async with aiomqtt.Client(
                address.hostname,
                address.port,
                username=address.username,
                password=address.password,
                tls_params=aiomqtt.TLSParameters() if address.tls else None,
                identifier=f"coppertone-bridge-{prefix}",
                clean_session=False,
            ) as client:
                log.info("MQTT bridge connected to %s:%s", address.hostname, address.port)
                delay = reconnect_delay
                await Bridge(client, prefix).run()
        except aiomqtt.MqttError as exc:
            log.warning("MQTT broker unreachable (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
