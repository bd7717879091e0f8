"""Chat over HTTP (docs/api.md): POST /chat (JSON or SSE), following and stopping a
reply, conversations, usage, health.

A thin transport over the reply runner (llm/replies.py): a refusal before the turn
starts is a 4xx with the error body alone; once it started, a provider failure is a
502 with the chat body and `error`, so the client has the text so far. Every lookup
is the caller's own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from accounts.models import User
from llm import attachments, presets, replies
from llm.api import conversations as conversations_api
from llm.api import streaming
from llm.api.base import (
    STATUS_FOR_CODE,
    ApiError,
    allow,
    api_view,
    int_param,
    read_json,
    user_of,
)
from llm.events import TurnError, TurnFinished
from llm.models import Conversation, DailyUsage, Message
from llm.turns import Turn, run_turn
from llm.usage import budget as month_budget

MAX_PAGE = conversations_api.MAX_PAGE
MAX_DAYS = 366
HEALTH_TIMEOUT = 2.0


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None or value == "":
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # 7.0 is the number 7 in JSON (and to JSON Schema's "integer")
    # JSON true is a Python int too: a number field must not take it.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        words = {int: "a number", str: "text", bool: "true or false"}[kind]
        raise ApiError("bad_request", f"{key} must be {words}.")
    return value


# --- POST /api/v1/chat -------------------------------------------------------------------


async def _turn_for(request: HttpRequest) -> tuple[Turn, bool]:
    data = read_json(request)
    message = data.get("message")
    if not isinstance(message, str):
        raise ApiError("bad_request", 'Send the text to answer as "message".')
    client_id = _optional(data, "client_message_id", str)
    try:
        client_message_id = uuid.UUID(client_id) if client_id else None
    except ValueError:
        raise ApiError("bad_request", "client_message_id must be a UUID.") from None
    wants_stream = bool(_optional(data, "stream", bool))
    user = user_of(request)
    chosen = await presets.for_turn(
        user,
        _optional(data, "preset", int),
        provider=_optional(data, "provider", str),
        model=_optional(data, "model", str),
    )
    turn = run_turn(
        user,
        message,
        conversation_id=_optional(data, "conversation_id", int),
        client_message_id=client_message_id,
        render_html=wants_stream,  # only the SSE `done` event carries html
        attachments=attachments.ids(data.get("attachments")),
        **chosen.turn_kwargs(),
    )
    return turn, wants_stream


def failed_status(result: TurnFinished) -> int:
    code = result.failure().code
    return STATUS_FOR_CODE.get(code, 502) if code.startswith("provider_") else 502


def chat_response(result: TurnFinished) -> JsonResponse:
    status = failed_status(result) if result.status == "error" else 200
    return JsonResponse(result.as_dict(), status=status)


@api_view
async def chat(request: HttpRequest) -> HttpResponse:
    """A reply that outlives the request: a client that leaves can follow it again with
    GET /api/v1/replies/{message_id}/events, and only a Stop ends it early."""
    allow(request, "POST")
    turn, stream = await _turn_for(request)
    reply = await replies.start(turn)  # a refusal is raised here, before anything started
    if stream:
        return streaming.sse_response(streaming.reply_events(reply.follow()))
    return chat_response(await reply.ended())


# --- conversations -------------------------------------------------------------------------


def _conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "pinned": conversation.pinned,
    }


def _message_json(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "provider": message.provider,
        "model": message.model,
        "usage": {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens},
        "cost": str(message.cost),
        "seq": message.seq,
        "ttft_ms": message.ttft_ms,
        "latency_ms": message.latency_ms,
        "thinking": message.thinking,
        "attempts": message.attempts or [],
        "cached": message.cached,
        "compare_id": str(message.compare_id) if message.compare_id else None,
        "attachments": [attachments.describe(a) for a in message.attachments.all()],
        "created_at": message.created_at.isoformat(),
    }
    if message.status == Message.Status.ERROR:
        body["error"] = TurnError(message.error_code, message.error_message).as_dict()
    return body


def _not_found() -> ApiError:
    return ApiError("not_found", "That conversation does not exist, or it was deleted.")


@sync_to_async
def _conversation_detail(user: User, pk: int, limit: int, offset: int) -> dict[str, Any]:
    conversation = Conversation.objects.filter(user=user, pk=pk).first()
    if conversation is None:
        raise _not_found()
    messages = conversation.messages.order_by("created_at", "id").prefetch_related("attachments")
    return {
        **_conversation_json(conversation),
        "messages": [_message_json(m) for m in messages[offset : offset + limit]],
        "total_messages": messages.count(),
    }


@api_view
async def conversation(request: HttpRequest, pk: int) -> HttpResponse:
    allow(request, "GET", "PATCH", "DELETE")
    user = user_of(request)
    if request.method == "PATCH":
        return await conversations_api.patch(request, pk)  # rename or pin
    if request.method == "DELETE":
        deleted, _ = await Conversation.objects.filter(user=user, pk=pk).adelete()
        if not deleted:
            raise _not_found()
        return HttpResponse(status=204)
    limit = int_param(request, "limit", 50, 1, MAX_PAGE)
    offset = int_param(request, "offset", 0, 0, 10**9)
    return JsonResponse(await _conversation_detail(user, pk, limit, offset))


# --- usage -----------------------------------------------------------------------------------


def _totals(row: Any) -> dict[str, Any]:
    return {
        "requests": row["requests"] or 0,
        "errors": row["errors"] or 0,
        "input_tokens": row["input_tokens"] or 0,
        "output_tokens": row["output_tokens"] or 0,
        "cost": str(row["cost"] or Decimal(0)),
    }


SUMS = {
    "requests": Sum("requests"),
    "errors": Sum("errors"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost"),
}


@sync_to_async
def _usage(user: User, days: int) -> dict[str, Any]:
    today = timezone.localdate()
    since = today - dt.timedelta(days=days - 1)
    rows = DailyUsage.objects.filter(user=user, day__gte=since)
    per_day = rows.values("day").annotate(**SUMS).order_by("-day")
    per_provider = rows.values("provider", "model").annotate(**SUMS).order_by("provider", "model")
    return {
        "days": days,
        "since": since.isoformat(),
        "total": _totals(rows.aggregate(**SUMS)),
        "per_day": [{"day": r["day"].isoformat(), **_totals(r)} for r in per_day],
        "per_provider": [
            {"provider": r["provider"], "model": r["model"], **_totals(r)} for r in per_provider
        ],
        # As the usage page and the widget say it (llm/usage.py).
        "budget": month_budget(user, today).as_dict(),
    }


@api_view
async def usage(request: HttpRequest) -> HttpResponse:
    allow(request, "GET")
    days = int_param(request, "days", 30, 1, MAX_DAYS)
    return JsonResponse(await _usage(user_of(request), days))


# --- health (no authentication) -----------------------------------------------------------


@sync_to_async(thread_sensitive=False)
def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_ok() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("the channel layer returned something else")


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, HEALTH_TIMEOUT)
    except TimeoutError:
        return f"unavailable: no answer within {HEALTH_TIMEOUT:g} s"
    except Exception as exc:
        # The exception's class only: its text may hold a host name or a password.
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def health(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return ApiError(
            "bad_request", "Use GET here.", status=405, allowed=("GET", "HEAD")
        ).response()
    database, channel_layer = await asyncio.gather(
        _check(_database_ok()), _check(_channel_layer_ok())
    )
    body: dict[str, Any] = {
        "status": "ok",
        "database": database,
        "channel_layer": channel_layer,
    }
    failing = [name for name in ("database", "channel_layer") if body[name] != "ok"]
    if not failing:
        return JsonResponse(body)
    body["status"] = "error"
    body["error"] = TurnError(
        "internal", f"Not working: {', '.join(n.replace('_', ' ') for n in failing)}."
    ).as_dict()
    return JsonResponse(body, status=503)
