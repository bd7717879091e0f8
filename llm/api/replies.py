"""Following and stopping a reply over HTTP (docs/api.md "Replies").

`GET /api/v1/replies/{id}/events` is SSE with `id: <seq>` on every event, so that a
browser's EventSource (or any client sending Last-Event-ID) resumes without gaps or
repeats; `POST /api/v1/replies/{id}/stop` stops the reply wherever it runs.
"""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, HttpResponse, JsonResponse

from llm import replies
from llm.api import streaming
from llm.api.base import ApiError, allow, api_view, int_param, user_of
from llm.events import TurnFinished


def _after(request: HttpRequest) -> int:
    after = int_param(request, "after", 0, 0, 10**9)  # checked even when the header wins
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        return after
    try:
        return max(0, int(raw))
    except ValueError:
        raise ApiError(
            "bad_request", "Last-Event-ID must be the id of an event, like 17."
        ) from None


@api_view
async def reply_events(request: HttpRequest, message_id: int) -> HttpResponse:
    """SSE: the reply's events after Last-Event-ID (or ?after=), then live, to its end."""
    allow(request, "GET")
    items = await replies.follow(user_of(request), message_id, _after(request))
    return streaming.sse_response(streaming.reply_events(items))


STOP_WAIT_SECONDS = 5.0


@api_view
async def reply_stop(request: HttpRequest, message_id: int) -> HttpResponse:
    """Stop the reply wherever it runs; answer with how it ended (202 if not yet)."""
    allow(request, "POST")
    user = user_of(request)
    await replies.stop(user, message_id)
    items = await replies.follow(user, message_id)
    try:
        async with asyncio.timeout(STOP_WAIT_SECONDS):
            async for _seq, event in items:
                if isinstance(event, TurnFinished):
                    # 200 whatever the reply's status: the stop worked, and a reply that
                    # failed before it says so in its body (a 5xx would say the stop failed).
                    return JsonResponse(event.as_dict())
    except TimeoutError:
        pass
    return JsonResponse({"message_id": message_id, "status": "streaming"}, status=202)
