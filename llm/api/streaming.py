"""Server-sent events out: one socket write for every frame that is ready at once.

A socket write per token was the largest single cost of relaying a stream (uvicorn
writes each ASGI body message straight to the socket). Providers send tokens in
bursts: one read upstream often holds several events. `batched` lets the turn run
ahead in its own task and hands Django whatever frames piled up since the last write,
joined, so a burst goes out as one write, while a lone token still goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from django.http import HttpResponse, StreamingHttpResponse

from llm.events import Event, TextDelta, ThinkingDelta, TurnFinished, TurnStarted, TurnWaiting


async def batched(frames: AsyncIterator[str]) -> AsyncIterator[str]:
    """Re-yield `frames`, joining those produced while the previous write was going out.

    Closing or cancelling this generator cancels the producer, which is how a client
    that leaves reaches the turn (stored as stopped) before this generator ends.
    """
    pending: list[str] = []
    ready = asyncio.Event()
    finished = False

    async def produce() -> None:
        nonlocal finished
        try:
            async for frame in frames:
                pending.append(frame)
                ready.set()
        finally:
            finished = True
            ready.set()

    producer = asyncio.create_task(produce())
    try:
        while True:
            if not pending and not finished:
                await ready.wait()
                ready.clear()
            if pending:
                batch = "".join(pending)
                pending.clear()
                yield batch
            elif finished:
                break
        await producer  # its exception, if it failed, is this response's
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


def sse(name: str, data: dict[str, Any], seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"


async def reply_events(
    items: AsyncIterator[tuple[int, Event]], message_id: int | None = None
) -> AsyncIterator[str]:
    """A reply's events as SSE (docs/api.md): `start`, `waiting`, `thinking`, `delta`…,
    `done` or `error`, each with `id: <seq>` so that a client resumes with Last-Event-ID.
    With `message_id` (a compare's columns share one stream) every event names its reply."""
    mine = f'"message_id": {message_id}, ' if message_id is not None else ""
    named = {"message_id": message_id} if message_id is not None else {}
    async for seq, event in items:
        if type(event) is TextDelta:
            # The hot path: one orjson.dumps of the text, no dict.
            text = orjson.dumps(event.text).decode()
            yield f'id: {seq}\nevent: delta\ndata: {{{mine}"text": {text}}}\n\n'
        elif type(event) is ThinkingDelta:
            yield sse("thinking", {**named, "text": event.text}, seq)
        elif isinstance(event, TurnStarted):
            yield sse("start", event.as_dict(), seq)
        elif isinstance(event, TurnWaiting):
            yield sse("waiting", {**named, "ahead": event.ahead}, seq)
        elif isinstance(event, TurnFinished):
            body = event.as_dict()
            if event.status == "error":
                yield sse("error", body, seq)
            else:
                body["html"] = event.html
                yield sse("done", body, seq)


def sse_response(frames: AsyncIterator[str]) -> HttpResponse:
    response = StreamingHttpResponse(
        batched(frames), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return cast(HttpResponse, response)  # the views' types name HttpResponse only
