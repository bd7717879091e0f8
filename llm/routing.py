"""WebSocket routes (the HTTP ones are in llm/urls.py and llm/api/urls.py)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from llm.consumers import ChatConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
