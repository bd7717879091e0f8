"""GET and PUT /api/v1/fallbacks: the caller's "if it fails" chain (docs/api.md).

What is valid is llm.forms.FallbackChain, the same check as the settings card's Save.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.models import User
from llm.api.base import ApiError, FieldErrors, allow, api_view, read_json, user_of
from llm.forms import FallbackChain


def _chain_json(user: User) -> dict[str, Any]:
    return {"chain": [step.as_dict() for step in FallbackChain.stored(user)]}


def _replace(user: User, payload: dict[str, Any]) -> dict[str, Any]:
    unknown = [name for name in payload if name != "chain"]
    if unknown or "chain" not in payload:
        raise ApiError(
            "bad_request",
            'Send {"chain": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}, '
            '{"provider": "local"}]}; an empty list removes every fallback.',
        )
    chain = FallbackChain(user, payload["chain"])
    if not chain.is_valid():
        raise FieldErrors(
            {name: [{"message": m} for m in messages] for name, messages in chain.errors.items()}
        )
    chain.save()
    return _chain_json(user)


@api_view
async def fallbacks(request: HttpRequest) -> HttpResponse:
    allow(request, "GET", "PUT")
    user = user_of(request)  # only ever the caller's own chain
    if request.method == "PUT":
        payload = read_json(request)
        return JsonResponse(await sync_to_async(_replace)(user, payload))
    return JsonResponse(await sync_to_async(_chain_json)(user))
