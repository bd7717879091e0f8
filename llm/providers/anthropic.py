"""Anthropic's Messages API.

Wire format: https://docs.anthropic.com/en/api/messages-streaming. The base URL is the
host (`https://api.anthropic.com`); the adapter adds `/v1/messages` and `/v1/models`.
The system prompt is its own field, `max_tokens` is required, and every request names
the API version it speaks in the `anthropic-version` header.

Extended thinking (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking)
is off unless asked for: thinking "show" sends `thinking: {"type": "enabled",
"budget_tokens": B}` with 1024 <= B < max_tokens, and then no temperature or top_p,
which the API refuses alongside it. Its text streams as `thinking` content blocks
(`thinking_delta` deltas); their `signature_delta` and `redacted_thinking` blocks carry
nothing a person can read.

Images (ChatMessage.images) go first in a user message's content, as `image` blocks
with a base64 `source` (`{"type": "base64", "media_type": "image/png", "data": ...}`),
then its text as a `text` block (https://docs.anthropic.com/en/docs/build-with-claude/vision,
https://docs.anthropic.com/en/api/messages).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from llm.providers import http
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ChatRequest,
    Credentials,
    Done,
    Event,
    Ping,
    Provider,
    TextDelta,
    ThinkingDelta,
    Usage,
)

API_VERSION = "2023-06-01"
# Used when neither the request nor the user's settings give max_tokens, which the API
# requires; every current Claude model accepts at least this many.
DEFAULT_MAX_TOKENS = 4096
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
# The smallest thinking budget the API accepts.
MIN_THINKING_BUDGET = 1024


class AnthropicProvider(Provider):
    kind = "anthropic"

    def _target(self, creds: Credentials, model: str = "") -> http.Target:
        return http.Target(self.spec.label, self.options, secret=creds.api_key, model=model)

    def _base(self, creds: Credentials) -> str:
        base = (creds.base_url or self.spec.default_base_url).strip().rstrip("/")
        # People paste the SDK-style host or the docs' full /v1 path; accept both.
        return base[:-3] if base.endswith("/v1") else base

    def _headers(self, creds: Credentials) -> dict[str, str]:
        key = creds.api_key.strip()
        if not key and self.spec.needs_key:
            raise AuthFailed(f"No API key is set for {self.spec.label}: add one in Settings → LLM.")
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        # The API has no system role in `messages`: every system text goes to `system`.
        system = [request.system] if request.system else []
        system += [m.content for m in request.messages if m.role == "system"]
        messages = [
            {"role": m.role, "content": _content(m)} for m in request.messages if m.role != "system"
        ]
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": messages,
            "stream": True,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.thinking == "show":
            # Thinking spends max_tokens too: up to half of it, at least the minimum;
            # where that leaves too little, the answer keeps its own max_tokens on top.
            budget = max(MIN_THINKING_BUDGET, max_tokens // 2)
            if budget >= max_tokens:
                body["max_tokens"] = budget + max_tokens
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            return body  # sampling settings are refused with thinking
        if request.temperature is not None:
            # Anthropic's range is 0 to 1; the settings allow OpenAI's 0 to 2.
            body["temperature"] = min(1.0, max(0.0, request.temperature))
        if request.top_p is not None:
            body["top_p"] = request.top_p
        return body

    def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[Event]:
        return http.with_retries(
            self.options, lambda deadline: self._attempt(request, creds, deadline)
        )

    async def _attempt(
        self, request: ChatRequest, creds: Credentials, deadline: float
    ) -> AsyncGenerator[Event, None]:
        target = self._target(creds, request.model)
        url = f"{self._base(creds)}/v1/messages"
        headers = {**self._headers(creds), "Accept": "text/event-stream"}
        body = self._body(request)
        input_tokens = output_tokens = 0
        seen_usage = stopped = False
        finish = ""
        events = http.stream_events(
            target,
            "POST",
            url,
            headers=headers,
            body=body,
            is_final=_is_stop,
            deadline=deadline,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if event.event == "ping":
                    continue
                data = http.parse_json(target, event.data)
                if not isinstance(data, dict):
                    continue
                kind = data.get("type") or event.event
                if kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    shape = delta.get("type")
                    if shape == "text_delta" and delta.get("text"):
                        yield TextDelta(delta["text"])
                    elif shape == "thinking_delta" and delta.get("thinking"):
                        yield ThinkingDelta(delta["thinking"])
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "thinking" and block.get("thinking"):
                        yield ThinkingDelta(block["thinking"])
                elif kind == "message_start":
                    usage = (data.get("message") or {}).get("usage") or {}
                    input_tokens = _input_tokens(usage)
                    output_tokens = int(usage.get("output_tokens") or 0)
                    seen_usage = bool(usage)
                elif kind == "message_delta":
                    usage = data.get("usage") or {}
                    # Cumulative counts; newer API versions repeat the input ones here.
                    output_tokens = int(usage.get("output_tokens") or output_tokens)
                    input_tokens = _input_tokens(usage) or input_tokens
                    seen_usage = seen_usage or bool(usage)
                    reason = (data.get("delta") or {}).get("stop_reason") or ""
                    finish = FINISH.get(reason, reason) or finish
                elif kind == "message_stop":
                    stopped = True
                elif kind == "error":
                    raise http.error_in_stream(target.label, data, secret=creds.api_key)
                # Other types (content_block_stop, signature and tool input deltas,
                # redacted_thinking blocks) carry nothing to show.
        if not stopped:
            raise http.ended_early(target)
        if seen_usage:
            yield Usage(input_tokens, output_tokens)
        yield Done(finish or "stop")

    async def list_models(self, creds: Credentials) -> list[str]:
        return await http.call_with_retries(self.options, lambda: self._models(creds))

    async def _models(self, creds: Credentials) -> list[str]:
        url = f"{self._base(creds)}/v1/models?limit=1000"
        items = await http.model_list(
            self._target(creds), url, headers=self._headers(creds), field="data"
        )
        return [str(m["id"]) for m in items if m.get("id")]

    async def ping(self, creds: Credentials) -> Ping:
        return await http.timed_ping(lambda: self._models(creds))


def _input_tokens(usage: dict[str, Any]) -> int:
    # Cached prompt tokens are billed input too; the API counts them separately.
    return sum(
        int(usage.get(name) or 0)
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _is_stop(event: http.SSEEvent) -> bool:
    return event.event == "message_stop"


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """The text alone, or the images (first, as Anthropic advises) and then the text."""
    if not message.images:
        return message.content
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
        }
        for image in message.images
    ]
    blocks.append({"type": "text", "text": message.content})
    return blocks
