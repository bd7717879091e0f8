"""The opt-in exact-match reply cache: the same question, asked again, answered from memory.

Per person and never shared: the key hashes the user id with everything the provider
would have been sent (kind, address, model, system prompt, the whole history,
sampling), so a hit is a reply this person already paid for once. Entries live
LLM_REPLY_CACHE_SECONDS in Django's cache (Redis when REDIS_URL is set, so every
worker shares them). Only complete replies are kept. A hit costs nothing: no
upstream call and no tokens billed (the message is marked `cached`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from llm import trips
from llm.providers.base import ChatRequest

PREFIX = "reply-cache:"


@dataclass(frozen=True, slots=True)
class Cached:
    content: str
    thinking: str


def key(user_id: int, kind: str, base_url: str, request: ChatRequest) -> str:
    asked = [
        user_id,
        kind,
        base_url,
        request.model,
        request.system,
        # Images by their bytes too: the same words about another picture are another question.
        [
            [m.role, m.content, *([[i.media_type, i.data] for i in m.images] if m.images else [])]
            for m in request.messages
        ],
        request.temperature,
        request.top_p,
        list(request.stop),
        request.max_tokens,
        request.thinking,
    ]
    digest = hashlib.sha256(json.dumps(asked, separators=(",", ":")).encode()).hexdigest()
    return PREFIX + digest


def get(cache_key: str) -> Cached | None:
    found = cache.get(cache_key)
    if not isinstance(found, dict) or not isinstance(found.get("content"), str):
        return None
    return Cached(found["content"], str(found.get("thinking") or ""))


def put(cache_key: str, content: str, thinking: str) -> None:
    cache.set(
        cache_key, {"content": content, "thinking": thinking}, settings.LLM_REPLY_CACHE_SECONDS
    )


get_trip = trips.trip(get)
put_trip = trips.trip(put)
