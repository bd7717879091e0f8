"""Security tests reuse the WebSocket fixtures: a signed-in socket, alice's OpenAI settings."""

from __future__ import annotations

from tests.consumers.conftest import connect, openai_for_alice

__all__ = ["connect", "openai_for_alice"]
