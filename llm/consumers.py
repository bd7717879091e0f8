"""The WebSocket transport, /ws/chat/: frames (API.md) to and from `turns.run_turn`.

Thin on purpose. Each `send` frame becomes one task kept on the consumer, so a
`stop` frame or a closed socket is handled while a reply streams: both cancel
the task, the engine stores the text so far as `stopped`, and the socket (if
still open) gets a `done` frame saying so. Text goes out through an `Outbox`:
no database work and no channel-layer round trip per token, and a burst of tokens
is one frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from llm.providers.base import TextDelta
from llm.turns import Turn, TurnError, TurnFinished, TurnStarted, run_turn

log = logging.getLogger(__name__)

# How long a closing socket waits for the engine to store a cancelled reply.
CANCEL_GRACE_SECONDS = 5.0
MAX_FRAME_CHARS = 200_000


def error_frame(code: str, message: str, *, message_id: int | None = None) -> str:
    return json.dumps(
        {"type": "error", "message_id": message_id, "error": {"code": code, "message": message}}
    )


def finished_frame(result: TurnFinished) -> str:
    """`done` for a complete or stopped reply; `error` (with the message id) for a failed one."""
    if result.status == "error":
        error = result.error or {"code": "provider_error", "message": "The reply failed."}
        return json.dumps({"type": "error", "message_id": result.message_id, "error": error})
    return json.dumps(
        {
            "type": "done",
            "message_id": result.message_id,
            "status": result.status,
            "html": result.html,
            "usage": {
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
            },
            "cost": str(result.cost),
            "ttft_ms": None if result.ttft_ms is None else round(result.ttft_ms),
            "latency_ms": round(result.latency_ms),
        }
    )


def stopped_early_frame(message_id: int | None) -> str:
    return json.dumps(
        {
            "type": "done",
            "message_id": message_id,
            "status": "stopped",
            "html": "",
            "usage": {"input_tokens": 0, "output_tokens": 0},
            "cost": "0",
            "ttft_ms": None,
            "latency_ms": 0,
        }
    )


class SendFrame:
    """A validated `send` frame; `parse` raises ValueError with words for the person."""

    __slots__ = ("client_message_id", "conversation_id", "model", "provider", "text")

    def __init__(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("Type a message before sending.")
        self.text: str = text
        conversation_id = data.get("conversation_id")
        if conversation_id is not None and (
            isinstance(conversation_id, bool) or not isinstance(conversation_id, int)
        ):
            raise ValueError("conversation_id must be a number or null.")
        self.conversation_id: int | None = conversation_id
        self.provider: str | None = self._optional_str(data, "provider")
        self.model: str | None = self._optional_str(data, "model")
        raw_id = data.get("client_message_id")
        self.client_message_id: uuid.UUID | None = None
        if raw_id not in (None, ""):
            try:
                self.client_message_id = uuid.UUID(str(raw_id))
            except ValueError:
                raise ValueError("client_message_id must be a UUID.") from None

    @staticmethod
    def _optional_str(data: dict[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError(f"{key} must be text.")
        return value


class Outbox:
    """One reply's text on its way to the socket, as `delta` frames.

    Deltas that arrive back to back (one read from a provider often holds dozens of
    tokens) leave as one frame: the writer sends whatever gathered while it waited for
    its turn on the event loop. Nothing waits on a timer, so a lone token still goes
    out at once; a burst costs one JSON string and one send instead of one per token.
    """

    __slots__ = ("_closing", "_head", "_parts", "_send", "_task", "_wake")

    def __init__(self, send: Callable[[str], Awaitable[None]], message_id: int) -> None:
        self._send = send
        self._head = f'{{"type":"delta","message_id":{message_id},"text":'
        self._parts: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._write())

    def put(self, text: str) -> None:
        self._parts.append(text)
        self._wake.set()

    async def _write(self) -> None:
        parts, wake = self._parts, self._wake
        while True:
            await wake.wait()
            wake.clear()
            if parts:
                text = parts[0] if len(parts) == 1 else "".join(parts)
                parts.clear()
                await self._send(self._head + json.dumps(text) + "}")
            if self._closing and not parts:
                return

    async def close(self) -> None:
        """Send what is left, in order, before the reply's last frame."""
        self._closing = True
        self._wake.set()
        # Shielded: a Stop that lands while we wait must not cancel the writer, so the
        # stop handler can still wait for it and send `done` after the last text.
        await asyncio.shield(self._task)

    def discard(self) -> None:
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            self._task.exception()  # a socket that closed under a send is no error here


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
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        await self.accept()

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "task", None)
        if task is not None and not task.done():
            task.cancel()
            # Let the engine store the partial reply before this consumer goes away.
            await asyncio.wait([task], timeout=CANCEL_GRACE_SECONDS)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send(error_frame("bad_request", "Send JSON text frames, not binary."))
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self.send(error_frame("too_large", "That message is too long to send."))
            return
        try:
            data = json.loads(text_data)
        except json.JSONDecodeError:
            await self.send(error_frame("bad_request", "That frame is not valid JSON."))
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "send":
            await self._start(data)
        elif kind == "stop":
            self._stop()
        else:
            await self.send(
                error_frame(
                    "bad_request",
                    'Unknown frame: use {"type": "send", "text": "..."} or {"type": "stop"}.',
                )
            )

    async def _start(self, data: dict[str, Any]) -> None:
        if self.task is not None and not self.task.done():
            await self.send(
                error_frame("busy", "A reply is still streaming: wait for it, or press Stop first.")
            )
            return
        try:
            frame = SendFrame(data)
        except ValueError as exc:
            await self.send(error_frame("bad_request", str(exc)))
            return
        turn = run_turn(
            self.user,
            frame.text,
            conversation_id=frame.conversation_id,
            provider=frame.provider,
            model=frame.model,
            client_message_id=frame.client_message_id,
        )
        self.stopping = False
        self.task = asyncio.create_task(self._relay(turn))

    def _stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.stopping = True
            self.task.cancel()

    async def _relay(self, turn: Turn) -> None:
        """Forward one turn's events; on Stop, report the stored partial reply."""
        send = self.send
        message_id: int | None = None
        outbox: Outbox | None = None
        try:
            # aclosing: a cancel that lands in our own `send` (between two events) still
            # closes upstream and stores the text so far, as one inside the engine does.
            async with aclosing(turn):
                async for event in turn:
                    if type(event) is TextDelta:
                        outbox.put(event.text)  # type: ignore[union-attr]  # set at TurnStarted
                    elif isinstance(event, TurnStarted):
                        message_id = event.message_id
                        await send(
                            json.dumps(
                                {
                                    "type": "start",
                                    "conversation_id": event.conversation_id,
                                    "message_id": event.message_id,
                                    "provider": event.provider,
                                    "model": event.model,
                                }
                            )
                        )
                        outbox = Outbox(send, event.message_id)
                    elif isinstance(event, TurnFinished):
                        if outbox is not None:
                            await outbox.close()
                        await send(finished_frame(event))
        except TurnError as exc:
            await self._send_last(
                json.dumps({"type": "error", "message_id": None, "error": exc.as_dict()})
            )
        except asyncio.CancelledError:
            # Stop: the engine stored the partial reply and set turn.result; tell the
            # person. On disconnect there is nobody left to tell.
            if not self.stopping:
                raise
            if outbox is not None:
                with suppress(OSError):
                    await outbox.close()  # the text that came before Stop, then `done`
            if turn.result is not None:
                await self._send_last(finished_frame(turn.result))
            else:  # stopped before the reply began: nothing was stored to report
                await self._send_last(stopped_early_frame(message_id))
        except OSError:
            pass  # the socket closed under a send; aclosing stored the reply as stopped
        except Exception:
            log.exception("chat turn failed")
            await self._send_last(
                error_frame(
                    "internal",
                    "Something went wrong on our side; your message is kept. Try again.",
                )
            )
        finally:
            if outbox is not None:
                outbox.discard()

    async def _send_last(self, frame: str) -> None:
        """A turn's closing frame; the socket may already be gone, which is no error."""
        with suppress(OSError):
            await self.send(frame)
