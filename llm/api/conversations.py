"""Conversations over HTTP (docs/api.md): the list with search and filters, rename and pin
(PATCH), export, import and deleting several at once.

A thin transport: what is found, valid and deleted is llm/conversations.py's and
llm/exports.py's, the same rules as the conversations page. Every lookup is the caller's
own; in a bulk delete another person's ids are ignored (`deleted` counts only the
caller's), so a retry after a partial failure is safe.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.models import User
from llm import conversations as found_in
from llm import exports
from llm.api.base import ApiError, FieldErrors, allow, api_view, int_param, read_json, user_of
from llm.models import Conversation
from llm.providers import registry

MAX_PAGE = 200
BIGINT = 2**63 - 1  # ids are BigAutoField: anything larger names nothing
EDITABLE = ("title", "pinned")


def summary_json(conversation: Conversation, messages: int) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": messages,
        "pinned": conversation.pinned,
    }


def _not_found() -> ApiError:
    return ApiError("not_found", "That conversation does not exist, or it was deleted.")


# --- GET /api/v1/conversations ------------------------------------------------------------


@sync_to_async
def _listing(user: User, criteria: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
    matched = found_in.search(user, **criteria)
    rows = found_in.found(matched[offset : offset + limit], criteria["query"])
    listed = []
    for row in rows:
        item = summary_json(row.conversation, row.message_count)
        if criteria["query"]:
            item["snippet"] = str(row.snippet)
        listed.append(item)
    return {"conversations": listed, "total": matched.count()}


@api_view
async def conversation_list(request: HttpRequest) -> HttpResponse:
    """Pinned first, then the newest activity; with q, the best matches first in each."""
    allow(request, "GET")
    limit = int_param(request, "limit", 50, 1, MAX_PAGE)
    offset = int_param(request, "offset", 0, 0, 10**9)
    form = found_in.FilterForm(request.GET)
    if not form.is_valid():
        raise FieldErrors(form.errors.get_json_data())
    return JsonResponse(await _listing(user_of(request), form.criteria(), limit, offset))


# --- PATCH /api/v1/conversations/{id} (routed from llm/api/chat.py's conversation view) ----


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        raise ApiError(
            "bad_request", f"Only title and pinned can be changed, not {', '.join(unknown)}."
        )
    if "title" in data and not isinstance(data["title"], str):
        raise ApiError("bad_request", "title must be text.")
    if "pinned" in data and not isinstance(data["pinned"], bool):
        raise ApiError("bad_request", "pinned must be true or false.")
    form = found_in.EditForm(data, fields=list(data))
    if not form.is_valid():
        raise FieldErrors(form.errors.get_json_data())
    return form.cleaned_data


@sync_to_async
def _edit(user: User, pk: int, data: dict[str, Any]) -> dict[str, Any]:
    row = found_in.search(user).filter(pk=pk).first()
    if row is None:
        raise _not_found()
    found_in.edit(row, _changes(data))
    return summary_json(row, found_in.message_count(row))


async def patch(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename or pin: `{"title"?, "pinned"?}`; omitted fields stay as they are."""
    return JsonResponse(await _edit(user_of(request), pk, read_json(request)))


# --- GET /api/v1/conversations/{id}/export ------------------------------------------------


@sync_to_async
def _export(user: User, pk: int, fmt: str) -> HttpResponse:
    conversation = Conversation.objects.filter(user=user, pk=pk).first()
    if conversation is None:
        raise _not_found()
    return exports.response(conversation, fmt)


@api_view
async def conversation_export(request: HttpRequest, pk: int) -> HttpResponse:
    allow(request, "GET")
    fmt = request.GET.get("format", "json")
    if fmt not in exports.FORMATS:
        raise ApiError("bad_request", "format must be md (Markdown) or json.")
    return await _export(user_of(request), pk, fmt)


# --- POST /api/v1/conversations/import ----------------------------------------------------


@sync_to_async
def _import(user: User, raw: bytes) -> dict[str, Any]:
    imported = exports.read(raw)
    conversation = exports.store(user, imported)
    return summary_json(conversation, len(imported.messages))


@api_view
async def conversation_import(request: HttpRequest) -> HttpResponse:
    """The body is the file: our export, {"messages": [...]}, or a bare list of messages."""
    allow(request, "POST")
    length = request.headers.get("Content-Length", "")
    if length.isdigit():
        exports.check_size(int(length))  # refused before the body is read
    try:
        raw = request.body
    except RequestDataTooBig:
        exports.check_size(exports.MAX_IMPORT_BYTES + 1)
        raise
    return JsonResponse(await _import(user_of(request), raw), status=201)


# --- POST /api/v1/conversations/delete ----------------------------------------------------


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ApiError("bad_request", "ids must be a list of conversation ids, like [3, 7].")
    if len(value) > found_in.MAX_BULK:
        raise ApiError(
            "bad_request", f"At most {found_in.MAX_BULK} ids at once: send them in batches."
        )
    ids = []
    for item in value:
        if isinstance(item, float) and item.is_integer():
            item = int(item)  # 7.0 is the number 7 in JSON (and to JSON Schema's "integer")
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= BIGINT:
            shown = json.dumps(item)[:40]
            raise ApiError(
                "bad_request", f"ids must hold conversation ids (whole numbers), not {shown}."
            )
        ids.append(item)
    return ids


@sync_to_async
def _delete(user: User, data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - {"ids", "provider"})
    if unknown:
        raise ApiError("bad_request", f"Send ids or provider, not {', '.join(unknown)}.")
    if ("ids" in data) == ("provider" in data):
        raise ApiError(
            "bad_request",
            'Send either "ids": [3, 7] (those conversations) or "provider": "openai" '
            "(every conversation with a reply from it), one of the two.",
        )
    if "provider" in data:
        provider = data["provider"]
        if not isinstance(provider, str) or provider not in registry.PROVIDERS:
            raise ApiError(
                "bad_request", f"provider must be one of {', '.join(registry.PROVIDERS)}."
            )
        gone = found_in.clear_provider(user, provider)
    else:
        gone = found_in.delete_owned(user, _ids(data["ids"]))
    return {"deleted": len(gone), "ids": gone}


@api_view
async def conversations_delete(request: HttpRequest) -> HttpResponse:
    allow(request, "POST")
    return JsonResponse(await _delete(user_of(request), read_json(request)))
