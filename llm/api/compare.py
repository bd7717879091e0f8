"""POST /api/v1/compare: one message to 2-4 models (llm/compare.py), as JSON or SSE.

JSON waits for every column and answers `{"compare_id", "replies": [...]}`: each column
is the chat body of its reply, or `{"provider", "model", "error"}` for one that could not
start. With `"stream": true` the columns' events interleave as they come, each with its
`message_id` (a column that could not start is an `error` event naming its target).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from llm import compare
from llm.api import streaming
from llm.api.base import ApiError, allow, api_view, read_json, user_of
from llm.events import TurnError


@api_view
async def compare_view(request: HttpRequest) -> HttpResponse:
    allow(request, "POST")
    data = read_json(request)
    text = data.get("message")
    if not isinstance(text, str) or not text.strip():
        raise ApiError("bad_request", 'Send the text to compare the models on as "message".')
    wanted = compare.targets(data.get("targets"))
    raw_id = data.get("client_message_id")
    try:
        client_message_id = uuid.UUID(str(raw_id)) if raw_id not in (None, "") else None
    except ValueError:
        raise ApiError("bad_request", "client_message_id must be a UUID.") from None
    compare_id, columns = await compare.start(user_of(request), text, wanted, client_message_id)
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError("bad_request", "stream must be true or false.")
    if stream:
        return streaming.sse_response(_events(compare_id, columns))
    bodies = await asyncio.gather(*(_body(column) for column in columns))
    return JsonResponse({"compare_id": str(compare_id), "replies": bodies})


async def _body(column: compare.Column) -> dict[str, Any]:
    if column.reply is None:
        assert column.error is not None
        return {**column.target.as_dict(), "error": column.error.as_dict()}
    return (await column.reply.ended()).as_dict()


async def _events(compare_id: uuid.UUID, columns: list[compare.Column]) -> AsyncIterator[str]:
    """Every column's SSE events as they come (each carries its message_id)."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump(column: compare.Column) -> None:
        try:
            if column.reply is None:
                error = column.error or TurnError.internal()
                body = {**column.target.as_dict(), "compare_id": str(compare_id)}
                await queue.put(streaming.sse("error", {**body, "error": error.as_dict()}, 0))
                return
            message_id = column.reply.message_id
            async for frame in streaming.reply_events(column.reply.follow(), message_id):
                await queue.put(frame)
        finally:
            await queue.put(None)

    pumps = [asyncio.create_task(pump(column)) for column in columns]
    try:
        open_columns = len(pumps)
        while open_columns:
            frame = await queue.get()
            if frame is None:
                open_columns -= 1
            else:
                yield frame
    finally:
        for task in pumps:
            task.cancel()  # the client left: stop following, the replies run on
