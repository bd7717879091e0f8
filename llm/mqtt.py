"""MQTT transport: devices talk to the engine through a broker (docs/api.md, "MQTT").

A device signs in to the broker as its hub user and publishes
`{"message", "session"?, "provider"?, "model"?, "request_id"?}` to
`<prefix>/<username>/<device_id>/request`; the bridge answers on
`<prefix>/<username>/<device_id>/response` with delta frames and a final done or error
frame. Each (user, device, session) is one conversation, so history carries across
requests. Like every transport, this module only translates frames to and from
`turns.run_turn`.

Who is asking comes from the topic, never from the payload: the broker authenticated
the device and its ACL (docs/mqtt.md) lets a user publish only under their own name and
read only their own responses. So no secret travels in a payload, and a payload that
still carries a `token` is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from django.conf import settings

from accounts.models import User
from llm import replies, trips
from llm.events import TextDelta, ThinkingDelta, TurnError, TurnFinished, TurnWaiting
from llm.turns import run_turn

log = logging.getLogger(__name__)

# Django's username characters; the broker never lets `+`, `#` or `/` into a topic level.
USERNAME = re.compile(r"^[\w.@-]{1,150}$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
QOS = 1
MAX_SESSION_CHARS = 100
MAX_REQUEST_ID_CHARS = 100
MAX_NAME_CHARS = 200  # provider kinds and model names


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    hostname: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """`mqtt://user:pass@host:1883` or `mqtts://user:pass@host:8883`.

        The error never repeats the URL: it may hold the broker password.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                "MQTT_URL must look like mqtt://user:password@host:1883 "
                "(or mqtts://... for TLS); the URL given does not."
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError("The port in MQTT_URL is not a number from 1 to 65535.") from None
        tls = parts.scheme == "mqtts"
        return cls(
            hostname=parts.hostname,
            port=port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def display(self) -> str:
        """The URL to show a person: the password, if any, as `***`."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{scheme}://{user}{host}:{self.port}"


def client(
    address: BrokerAddress,
    *,
    ca_file: str = "",
    identifier: str | None = None,
    clean_session: bool | None = None,
) -> aiomqtt.Client:
    """A client for `address`; `mqtts://` verifies the broker's certificate and host name
    against `ca_file` (the system's trusted roots when empty)."""
    tls = aiomqtt.TLSParameters(ca_certs=ca_file or None) if address.tls else None
    return aiomqtt.Client(
        address.hostname,
        address.port,
        username=address.username,
        password=address.password,
        tls_params=tls,
        identifier=identifier,
        clean_session=clean_session,
    )


class BadFrame(Exception):
    """A request the bridge cannot act on; the message says what to change."""

    def __init__(
        self, message: str, *, code: str = "bad_request", request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request came from: the broker-authenticated user and their device."""

    username: str
    device_id: str

    @classmethod
    def parse(cls, prefix: str, topic: str) -> Route | None:
        head = f"{prefix}/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if len(levels) != 3 or levels[2] != "request":
            return None
        username, device_id = levels[0], levels[1]
        if not USERNAME.match(username) or not DEVICE_ID.match(device_id):
            return None
        return cls(username, device_id)

    def response_topic(self, prefix: str) -> str:
        return f"{prefix}/{self.username}/{self.device_id}/response"


@dataclass(frozen=True, slots=True)
class Request:
    message: str
    session: str
    provider: str | None
    model: str | None
    request_id: str | None

    @classmethod
    def parse(cls, payload: bytes) -> Request:
        """Every field type-checked: a wrong one is a BadFrame that names it."""
        data = _json_object(payload)
        request_id = _request_id(data)

        def bad(message: str) -> BadFrame:
            return BadFrame(message, request_id=request_id)

        if "token" in data:
            raise bad(
                'Tokens no longer go in MQTT payloads: remove "token" and sign in to the '
                "broker as your Coppertone user instead (docs/mqtt.md). A token sent this "
                "way may have been seen by others: revoke it in Settings → Tokens."
            )
        message = data.get("message")
        if not isinstance(message, str) or not message.strip():
            raise bad('Add the text to send as "message" (a string).')
        session = data.get("session")
        if session is None:
            session = "default"
        if not isinstance(session, str) or not 1 <= len(session) <= MAX_SESSION_CHARS:
            raise bad(f'"session" must be a string of 1 to {MAX_SESSION_CHARS} characters.')
        return cls(
            message=message,
            session=session,
            provider=_optional_name(data, "provider", bad),
            model=_optional_name(data, "model", bad),
            request_id=request_id,
        )


def _json_object(payload: bytes) -> dict[str, Any]:
    limit = max_payload_bytes()
    if len(payload) > limit:
        raise BadFrame(
            f"The request is larger than {limit:,} bytes: shorten the message.", code="too_large"
        )
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadFrame('The request is not JSON: send an object like {"message": "hi"}.') from None
    if not isinstance(data, dict):
        raise BadFrame('The request must be a JSON object like {"message": "hi"}.')
    return data


def _request_id(data: dict[str, Any]) -> str | None:
    value = data.get("request_id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REQUEST_ID_CHARS:
        raise BadFrame(
            f'"request_id" must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters '
            "(or a whole number)."
        )
    return value


def _optional_name(data: dict[str, Any], key: str, bad: Callable[[str], BadFrame]) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise bad(f'"{key}" must be a string of at most {MAX_NAME_CHARS} characters, or absent.')
    return value


def max_payload_bytes() -> int:
    # The longest message the engine accepts, every character escaped as \uXXXX, plus
    # room for the other fields: anything bigger is refused before it is parsed.
    return settings.LLM_MAX_MESSAGE_CHARS * 6 + 4096


def request_id_of(payload: bytes) -> str | None:
    """Best effort, so that even a refused frame can be matched by the device."""
    try:
        return _request_id(_json_object(payload))
    except BadFrame:
        return None


def _active_user(username: str) -> User | None:
    return User.objects.filter(username=username, is_active=True).first()


_active_user_trip = trips.trip(_active_user)


class Bridge:
    """Subscribes to every user's request topics and answers each request in its own task.

    At most `max_concurrent` requests are handled at once (the listener waits for a free
    slot before it takes the next message), and one user has at most `max_per_user` of
    them: their further requests are refused as `busy` at once, so one busy user cannot
    hold every slot.
    """

    def __init__(
        self,
        client: aiomqtt.Client,
        prefix: str = "coppertone",
        *,
        max_concurrent: int | None = None,
        max_per_user: int | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_concurrent = max_concurrent or settings.MQTT_MAX_CONCURRENT
        self.max_per_user = max_per_user or settings.MQTT_MAX_CONCURRENT_PER_USER
        self.slots = asyncio.Semaphore(self.max_concurrent)
        self.active: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        await self.subscribe()
        await self.listen()

    async def subscribe(self) -> None:
        await self.client.subscribe(f"{self.prefix}/+/+/request", qos=QOS)

    async def listen(self) -> None:
        try:
            async for message in self.client.messages:
                if message.retain:
                    # A retained request would be answered again at every reconnect.
                    log.warning("ignored a retained MQTT request on %r", message.topic.value)
                    continue
                payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                await self.slots.acquire()
                task = asyncio.create_task(self._in_slot(message.topic.value, bytes(payload)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            for task in self.tasks:
                task.cancel()

    async def _in_slot(self, topic: str, payload: bytes) -> None:
        # Nothing a device sends may end this task with an exception nobody reads.
        try:
            await self.handle(topic, payload)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish an MQTT answer (%s)", exc)
        except Exception:
            log.exception("an MQTT request failed")
        finally:
            self.slots.release()

    async def publish(self, route: Route, frame: dict[str, Any]) -> None:
        await self.client.publish(route.response_topic(self.prefix), json.dumps(frame), qos=QOS)

    async def handle(self, topic: str, payload: bytes) -> None:
        route = Route.parse(self.prefix, topic)
        if route is None:
            log.warning(
                "ignored an MQTT request on %r: not <prefix>/<user>/<device>/request", topic
            )
            return
        if self.active[route.username] >= self.max_per_user:
            busy = TurnError(
                "busy",
                f"{self.max_per_user} of your MQTT requests are being answered already: "
                "send this one again when one of them is done.",
            )
            await self.error(route, request_id_of(payload), busy)
            return
        self.active[route.username] += 1
        try:
            await self._answer(route, payload)
        finally:
            self.active[route.username] -= 1
            if not self.active[route.username]:
                del self.active[route.username]

    async def _answer(self, route: Route, payload: bytes) -> None:
        try:
            request = Request.parse(payload)
        except BadFrame as exc:
            await self.error(route, exc.request_id, TurnError(exc.code, exc.message))
            return
        user = await _active_user_trip(route.username)
        if user is None:
            error = TurnError(
                "unauthenticated",
                f"The broker signed you in as {route.username!r}, but Coppertone has no "
                "active account by that name: ask the operator to give your broker "
                "account your Coppertone username (docs/mqtt.md).",
            )
            await self.error(route, request.request_id, error)
            return
        turn = run_turn(
            user,
            request.message,
            provider=request.provider,
            model=request.model,
            conversation_key=f"mqtt:{route.device_id}:{request.session}",
        )
        base = {"request_id": request.request_id}
        try:
            # owned: a reply ends with its request here (the bridge stopping, the broker
            # gone), stored as stopped, as before replies outlived their askers.
            async with replies.owned(turn) as reply:
                async for _seq, event in reply.follow():
                    if type(event) is TextDelta:
                        await self.publish(route, {**base, "type": "delta", "text": event.text})
                    elif type(event) is ThinkingDelta:
                        await self.publish(route, {**base, "type": "thinking", "text": event.text})
                    elif isinstance(event, TurnWaiting):
                        await self.publish(route, {**base, "type": "waiting", "ahead": event.ahead})
                    elif isinstance(event, TurnFinished):
                        # A provider failure ends as an error frame that still carries
                        # the text that came, like the WebSocket's.
                        kind = "error" if event.status == "error" else "done"
                        await self.publish(route, {**event.as_dict(), **base, "type": kind})
        except TurnError as exc:
            await self.error(route, request.request_id, exc)

    async def error(self, route: Route, request_id: str | None, error: TurnError) -> None:
        await self.publish(
            route, {"request_id": request_id, "type": "error", "error": error.as_dict()}
        )


async def serve(
    url: str,
    prefix: str,
    *,
    ca_file: str = "",
    max_concurrent: int | None = None,
    max_per_user: int | None = None,
    reconnect_delay: float = 1.0,
) -> None:
    """Run the bridge until cancelled, reconnecting with backoff when the broker goes away."""
    address = BrokerAddress.parse(url)
    delay = reconnect_delay
    while True:
        try:
            async with client(
                address,
                ca_file=ca_file,
                identifier=f"coppertone-bridge-{prefix}",
                clean_session=False,
            ) as connected:
                log.info("MQTT bridge connected to %s", address.display())
                delay = reconnect_delay
                bridge = Bridge(
                    connected, prefix, max_concurrent=max_concurrent, max_per_user=max_per_user
                )
                await bridge.run()
        except aiomqtt.MqttError as exc:
            log.warning("MQTT broker %s: %s; retrying in %.0f s", address.display(), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
