"""WebSocket routes (the HTTP ones are in llm/urls.py and llm/api/urls.py)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
