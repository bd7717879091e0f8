"""GET /api/v1/health/providers: provider health for staff (llm/health.py).

Anyone else gets the 404 of an endpoint that is not there, as for any object they may
not see. /api/v1/health stays public and cheap (llm/api/chat.py).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from llm import health
from llm.api.base import ApiError, allow, api_view, user_of


@api_view
async def providers_health(request: HttpRequest) -> HttpResponse:
    allow(request, "GET", "HEAD")
    if not user_of(request).is_staff:
        raise ApiError(
            "not_found", "There is no such endpoint: /api/v1/openapi.json lists those there are."
        )
    report = await sync_to_async(health.provider_health)(timezone.now())
    return JsonResponse(report.as_dict())
