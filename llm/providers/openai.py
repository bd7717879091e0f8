"""OpenAI's Chat Completions API, and every server that speaks it.

One class for OpenAI, Azure OpenAI, Qwen (DashScope compatible mode), the Hugging Face
router, Ollama, LM Studio, llama.cpp, vLLM and any custom base URL: what differs is
data (the registry's base URL, whether a key is needed, Azure's api-version field),
not code paths per kind.

Wire format: https://platform.openai.com/docs/api-reference/chat-streaming. A stream is
`chat.completion.chunk` objects; with `stream_options.include_usage` the last chunk has
empty `choices` and the usage; `data: [DONE]` ends it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

from llm.providers import http
from llm.providers.base import (
    AuthFailed,
    BadRequest,
    ChatRequest,
    Credentials,
    Done,
    Event,
    Ping,
    Provider,
    ProviderOptions,
    ProviderSpec,
    TextDelta,
    Usage,
)

# Azure OpenAI's current GA data-plane version; a user may set another per configuration.
AZURE_API_VERSION = "2024-10-21"
# OpenAI's own hosts take max_completion_tokens (its reasoning models refuse max_tokens);
# the compatible servers know max_tokens.
OPENAI_HOSTS = ("openai.com", "openai.azure.com")
# A base URL whose path ends in an API version (/v1, /v1beta, /api/v3).
VERSIONED = re.compile(r"/v\d+[a-z0-9]*$")


class OpenAIProvider(Provider):
    kind = "openai"

    def __init__(self, spec: ProviderSpec, options: ProviderOptions) -> None:
        super().__init__(spec, options)
        # Azure is the one dialect with a deployment path, a query version and `api-key`.
        self.azure = "api_version" in spec.extra_fields

    # --- how to reach the server -----------------------------------------------------

    def _target(self, creds: Credentials, model: str = "") -> http.Target:
        hint = ""
        base = (creds.base_url or self.spec.default_base_url).rstrip("/")
        if not self.azure and not VERSIONED.search(base):
            hint = " OpenAI-compatible base URLs usually end in /v1."
        return http.Target(
            self.spec.label, self.options, secret=creds.api_key, not_found_hint=hint, model=model
        )

    def _base(self, creds: Credentials) -> str:
        base = (creds.base_url or self.spec.default_base_url).strip().rstrip("/")
        if not base:
            raise BadRequest(f"Set the base URL for {self.spec.label} in Settings → LLM.")
        return base

    def _headers(self, creds: Credentials) -> dict[str, str]:
        key = creds.api_key.strip()
        if not key and self.spec.needs_key:
            raise AuthFailed(f"No API key is set for {self.spec.label}: add one in Settings → LLM.")
        if not key:
            return {}
        return {"api-key": key} if self.azure else {"Authorization": f"Bearer {key}"}

    def _version(self, creds: Credentials) -> str:
        return quote(creds.api_version.strip() or AZURE_API_VERSION, safe="")

    def _chat_url(self, creds: Credentials, model: str) -> str:
        base = self._base(creds)
        if self.azure:
            deployment = quote(model, safe="")
            return (
                f"{base}/openai/deployments/{deployment}/chat/completions"
                f"?api-version={self._version(creds)}"
            )
        return f"{base}/chat/completions"

    def _models_url(self, creds: Credentials) -> str:
        base = self._base(creds)
        if self.azure:
            return f"{base}/openai/models?api-version={self._version(creds)}"
        return f"{base}/models"

    def _body(self, request: ChatRequest, base: str) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            host = (urlsplit(base).hostname or "").lower()
            official = any(host == h or host.endswith("." + h) for h in OPENAI_HOSTS)
            body["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
        return body

    # --- the contract --------------------------------------------------------------

    def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[Event]:
        return http.with_retries(
            self.options, lambda deadline: self._attempt(request, creds, deadline)
        )

    async def _attempt(
        self, request: ChatRequest, creds: Credentials, deadline: float
    ) -> AsyncGenerator[Event, None]:
        target = self._target(creds, request.model)
        url = self._chat_url(creds, request.model)
        headers = {**self._headers(creds), "Accept": "text/event-stream"}
        body = self._body(request, self._base(creds))
        finish = ""
        done = False
        usage: Usage | None = None
        events = http.stream_events(
            target,
            "POST",
            url,
            headers=headers,
            body=body,
            is_final=_is_done,
            deadline=deadline,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if _is_done(event):
                    done = True
                    continue
                data = http.parse_json(target, event.data)
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    raise http.error_in_stream(target.label, data, secret=creds.api_key)
                for choice in data.get("choices") or ():
                    delta = choice.get("delta") or {}
                    text = delta.get("content") or delta.get("refusal")
                    if text:
                        yield TextDelta(text)
                    finish = choice.get("finish_reason") or finish
                reported = data.get("usage")
                if isinstance(reported, dict):
                    usage = Usage(
                        int(reported.get("prompt_tokens") or 0),
                        int(reported.get("completion_tokens") or 0),
                    )
        # Some compatible servers omit [DONE]; a finish_reason says the reply is whole too.
        if not done and not finish:
            raise http.ended_early(target)
        if usage is not None:
            yield usage
        yield Done(finish or "stop")

    async def list_models(self, creds: Credentials) -> list[str]:
        return await http.call_with_retries(self.options, lambda: self._models(creds))

    async def _models(self, creds: Credentials) -> list[str]:
        url = self._models_url(creds)
        items = await http.model_list(
            self._target(creds), url, headers=self._headers(creds), field="data"
        )
        return sorted({str(m["id"]) for m in items if m.get("id")})

    async def ping(self, creds: Credentials) -> Ping:
        return await http.timed_ping(lambda: self._models(creds))


def _is_done(event: http.SSEEvent) -> bool:
    return event.data.strip() == "[DONE]"
