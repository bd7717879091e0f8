"""The WebSocket transport, /ws/chat/: frames (docs/api.md) to and from the reply runner.

Thin on purpose. A `send` frame starts a reply (llm/replies.py) and this socket
follows it; an `attach` frame follows a reply that is already running (or ended),
from any page, tab or worker, after the last `seq` the client saw. Each followed
reply is one task on the consumer. Closing the socket ends the following, never the
reply; only a `stop` frame does. Deltas that pile up while a frame goes out leave as
one frame: no database work and no channel-layer round trip per token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from llm import attachments, compare, presets, replies
from llm.events import (
    Event,
    TextDelta,
    ThinkingDelta,
    TurnError,
    TurnFinished,
    TurnStarted,
    TurnWaiting,
)
from llm.turns import Turn, run_turn

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 200_000
TOO_LARGE = (
    f"That frame is over {MAX_FRAME_CHARS:,} characters, so the connection was closed; "
    "shorten the message and send it again."
)
# One socket follows at most this many replies at once (compare mode follows several).
MAX_FOLLOWS = 8


def error_frame(error: TurnError, *, message_id: int | None = None, seq: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "message_id": message_id, "error": error.as_dict()}
    if seq is not None:
        frame["seq"] = seq
    return json.dumps(frame)


def start_frame(seq: int, event: TurnStarted) -> str:
    return json.dumps({"type": "start", "seq": seq, **event.as_dict()})


def thinking_frame(message_id: int, seq: int, event: ThinkingDelta) -> str:
    return json.dumps(
        {"type": "thinking", "message_id": message_id, "seq": seq, "text": event.text}
    )


def waiting_frame(message_id: int, seq: int, event: TurnWaiting) -> str:
    return json.dumps(
        {"type": "waiting", "message_id": message_id, "seq": seq, "ahead": event.ahead}
    )


def finished_frame(seq: int, result: TurnFinished) -> str:
    """`done` for a complete or stopped reply; `error` (with the message id) for a failed one."""
    if result.status == "error":
        frame = json.loads(error_frame(result.failure(), message_id=result.message_id, seq=seq))
        frame["attempts"] = [attempt.as_dict() for attempt in result.attempts]
        return json.dumps(frame)
    return json.dumps(
        {
            "type": "done",
            "message_id": result.message_id,
            "seq": seq,
            "status": result.status,
            "html": result.html,
            "usage": {
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
            },
            "cost": str(result.cost),
            "ttft_ms": None if result.ttft_ms is None else round(result.ttft_ms),
            "latency_ms": round(result.latency_ms),
            "thinking": result.thinking,
            "thinking_ms": None if result.thinking_ms is None else round(result.thinking_ms),
            "answered_by": {"provider": result.provider, "model": result.model},
            "attempts": [attempt.as_dict() for attempt in result.attempts],
            "cached": result.cached,
        }
    )


class SendFrame:
    """A validated `send` frame; raises TurnError (bad_request) with words for the person."""

    __slots__ = (
        "attachments",
        "client_message_id",
        "conversation_id",
        "model",
        "preset",
        "provider",
        "text",
    )

    def __init__(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("Type a message before sending.")
        self.text: str = text
        self.conversation_id = _optional_id(data, "conversation_id")
        self.provider: str | None = _optional_str(data, "provider")
        self.model: str | None = _optional_str(data, "model")
        self.preset: int | None = _optional_id(data, "preset")
        self.attachments: tuple[int, ...] = attachments.ids(data.get("attachments"))
        raw_id = data.get("client_message_id")
        self.client_message_id: uuid.UUID | None = None
        if raw_id not in (None, ""):
            try:
                self.client_message_id = uuid.UUID(str(raw_id))
            except ValueError:
                raise _bad("client_message_id must be a UUID.") from None


def _bad(message: str) -> TurnError:
    return TurnError("bad_request", message)


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} must be text.")
    return value


def _optional_id(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(f"{key} must be a number or null.")
    return value


class ChatConsumer(AsyncWebsocketConsumer):
    # No channel layer: nothing is ever sent to a socket from outside it, and a layer
    # would cost every idle socket a channel and a pending receive (on Redis, a connection).
    channel_layer_alias = "__no_channel_layer__"

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first hops to the sync thread to close stale database
        # connections, once per frame; every consumer in the process queues on that one
        # thread. Nothing in this consumer touches the database: the engine's trips and
        # Channels' session and user lookups (database_sync_to_async) close their own.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # The same, without the closing hop of Channels' version (this consumer has no groups).
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.follows: dict[int, asyncio.Task[None]] = {}
        self.started: replies.Reply | None = None  # the reply this socket started last
        self.starting: asyncio.Task[None] | None = None
        self.stop_when_started = False
        # daphne (runserver) sends no lifespan event: the first socket starts the pings.
        replies.runner().keep_models_loaded()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Following ends with the socket; the replies themselves run on.
        for task in [*getattr(self, "follows", {}).values(), getattr(self, "starting", None)]:
            if task is not None and not task.done():
                task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None and len(text_data) > MAX_FRAME_CHARS:
            await self.send(error_frame(TurnError("too_large", TOO_LARGE)))
            await self.close(code=1009)  # "message too big"
            return
        try:
            data = self._parse(text_data)
            kind = data.get("type")
            if kind == "send":
                self._send(SendFrame(data))
            elif kind == "attach":
                message_id = _optional_id(data, "message_id")
                if message_id is None:
                    raise _bad("attach needs the message_id of the reply to follow.")
                after = _optional_id(data, "after") or 0
                try:
                    items = await replies.follow(self.user, message_id, after)
                except TurnError as error:
                    await self.send(error_frame(error, message_id=message_id))
                    return
                self._follow(message_id, items)
            elif kind == "stop":
                await self._stop(_optional_id(data, "message_id"))
            elif kind == "compare":
                await self._compare(SendFrame(data), compare.targets(data.get("targets")))
            else:
                raise _bad(
                    'Unknown frame: use {"type": "send", "text": "..."}, '
                    '{"type": "attach", "message_id": 41, "after": 0}, {"type": "stop"} '
                    'or {"type": "compare", "text": "...", "targets": [...]}.'
                )
        except TurnError as error:
            await self.send(error_frame(error))

    @staticmethod
    def _parse(text_data: str | None) -> dict[str, Any]:
        if text_data is None:
            raise _bad("Send JSON text frames, not binary.")
        try:
            data = json.loads(text_data)
        except json.JSONDecodeError:
            raise _bad("That frame is not valid JSON.") from None
        return data if isinstance(data, dict) else {}

    # --- compare: one message to several models, a reply each ------------------------

    async def _compare(self, frame: SendFrame, wanted: list[compare.Target]) -> None:
        compare_id, columns = await compare.start(
            self.user, frame.text, wanted, frame.client_message_id
        )
        for column in columns:
            reply = column.reply
            if reply is not None:
                # The starts in the targets' order (a page lays its columns out by them).
                started = reply.events[0]
                assert isinstance(started, TurnStarted)
                await self.send(start_frame(1, started))
                self._follow(reply.message_id, reply.follow(after=1))
            elif column.error is not None:  # this column could not start; the others do
                refused = json.loads(error_frame(column.error))
                refused.update(compare_id=str(compare_id), target=column.target.as_dict())
                await self.send(json.dumps(refused))

    # --- send: start a reply and follow it --------------------------------------------

    def _send(self, frame: SendFrame) -> None:
        if self.starting is not None and not self.starting.done():
            raise TurnError("busy", "Your last message is still being sent: wait a moment.")
        self.stop_when_started = False
        self.starting = asyncio.create_task(self._start_sent(frame))

    async def _start_sent(self, frame: SendFrame) -> None:
        # The preset is read inside the starting task: a bare Stop or a second send
        # meanwhile is handled as for any reply that has not begun.
        try:
            chosen = await presets.for_turn(
                self.user, frame.preset, provider=frame.provider, model=frame.model
            )
        except TurnError as error:
            await self._send_quietly(error_frame(error))
            return
        turn = run_turn(
            self.user,
            frame.text,
            conversation_id=frame.conversation_id,
            client_message_id=frame.client_message_id,
            attachments=frame.attachments,
            **chosen.turn_kwargs(),
        )
        await self._start(turn)

    async def _start(self, turn: Turn) -> None:
        try:
            reply = await replies.start(turn)
        except TurnError as error:
            await self._send_quietly(error_frame(error))
            if error.code == "unauthenticated":  # deactivated since the socket opened
                await self.close(code=4403)
            return
        self.started = reply
        if self.stop_when_started:  # Stop pressed before the reply had begun
            reply.stop()
        self._follow(reply.message_id, reply.follow())

    def _follow(self, message_id: int, items: AsyncIterator[tuple[int, Event]]) -> None:
        previous = self.follows.pop(message_id, None)
        if previous is not None:
            previous.cancel()
        for done in [k for k, t in self.follows.items() if t.done()]:
            del self.follows[done]
        if len(self.follows) >= MAX_FOLLOWS:
            raise TurnError("busy", f"This socket already follows {MAX_FOLLOWS} replies.")
        self.follows[message_id] = asyncio.create_task(self._relay(message_id, items))

    async def _relay(self, message_id: int, items: AsyncIterator[tuple[int, Event]]) -> None:
        """Send one reply's events as frames, from where the client asked, to its end."""
        send = self.send
        head = f'{{"type":"delta","message_id":{message_id},"seq":'
        try:
            async for seq, event in items:
                if type(event) is TextDelta:
                    await send(f'{head}{seq},"text":{orjson.dumps(event.text).decode()}}}')
                elif type(event) is ThinkingDelta:
                    await send(thinking_frame(message_id, seq, event))
                elif isinstance(event, TurnStarted):
                    await send(start_frame(seq, event))
                elif isinstance(event, TurnWaiting):
                    await send(waiting_frame(message_id, seq, event))
                elif isinstance(event, TurnFinished):
                    await send(finished_frame(seq, event))
        except OSError:
            pass  # the socket closed under a send: the reply runs on
        except Exception:
            log.exception("following reply %s failed", message_id)
            await self._send_quietly(error_frame(TurnError.internal(), message_id=message_id))

    # --- stop ---------------------------------------------------------------------------

    async def _stop(self, message_id: int | None) -> None:
        if message_id is not None:
            await replies.stop(self.user, message_id)
            return
        # A bare stop: the reply this socket started.
        if self.starting is not None and not self.starting.done():
            self.stop_when_started = True
        elif self.started is not None:
            self.started.stop()

    async def _send_quietly(self, frame: str) -> None:
        """A closing frame; the socket may already be gone, which is no error here."""
        with suppress(OSError):
            await self.send(frame)
