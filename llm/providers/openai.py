"""OpenAI's Chat Completions API, and every server that speaks it.

One class for OpenAI, Azure OpenAI, Qwen (DashScope compatible mode), the Hugging Face
router, Ollama, LM Studio, llama.cpp, vLLM and any custom base URL: what differs is
data (the registry's base URL, whether a key is needed, Azure's api-version field),
not code paths per kind.

Wire format: https://platform.openai.com/docs/api-reference/chat-streaming. A stream is
`chat.completion.chunk` objects; with `stream_options.include_usage` the last chunk has
empty `choices` and the usage; `data: [DONE]` ends it.

Thinking arrives in three shapes, all yielded as ThinkingDelta:
- `delta.reasoning_content` (DeepSeek, vLLM, DashScope:
  https://docs.vllm.ai/en/stable/features/reasoning_outputs/,
  https://www.alibabacloud.com/help/en/model-studio/deep-thinking);
- `delta.reasoning` (vLLM's newer name, Ollama's /v1);
- `<think>…</think>` at the start of the content, from servers without a reasoning
  parser (thinking.py).
ChatRequest.thinking becomes the body fragment of the server's `thinking_switch`
(registry data): DashScope's `enable_thinking`, a chat template's `enable_thinking`
through `chat_template_kwargs` (vLLM, llama.cpp's llama-server), Ollama's
`reasoning_effort: "none"`. OpenAI's reasoning models (o1, o3, o4, gpt-5) take no
temperature or top_p, take `max_completion_tokens`, and are asked not to think with
their lowest `reasoning_effort` (https://platform.openai.com/docs/guides/reasoning,
https://platform.openai.com/docs/guides/latest-model: "minimal" for gpt-5, "none"
from gpt-5.1, "low" for the o-series).

Images (ChatMessage.images) make a user message's content a list of parts: its text as
`{"type": "text"}`, then each image as `{"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}` (https://platform.openai.com/docs/guides/images-vision,
https://platform.openai.com/docs/api-reference/chat/create); the compatible servers
(Ollama, vLLM, llama.cpp, LM Studio) take the same parts for their vision models.

Keep-alive (ProviderSpec.keep_alive): "ollama" is Ollama's load request, POST
`/api/generate` at the host root with a model, no prompt and `keep_alive`
(https://github.com/ollama/ollama/blob/main/docs/api.md, "Load a model"); "one_token"
is a streamed chat request for one token, which loads the model in any server.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from llm.providers import http
from llm.providers.base import (
    AuthFailed,
    BadRequest,
    ChatMessage,
    ChatRequest,
    Credentials,
    Done,
    Event,
    Image,
    Ping,
    Provider,
    ProviderOptions,
    ProviderSpec,
    ThinkingDelta,
    Usage,
    keep_alive_refused,
)
from llm.providers.thinking import ThinkSplitter

# Azure OpenAI's current GA data-plane version; a user may set another per configuration.
AZURE_API_VERSION = "2024-10-21"
# OpenAI's own hosts take max_completion_tokens (its reasoning models refuse max_tokens);
# the compatible servers know max_tokens.
OPENAI_HOSTS = ("openai.com", "openai.azure.com")
# A base URL whose path ends in an API version (/v1, /v1beta, /api/v3).
VERSIONED = re.compile(r"/v\d+[a-z0-9]*$")

# ChatRequest.thinking -> the body fragment, per ProviderSpec.thinking_switch.
THINKING_SWITCHES: dict[str, dict[str, dict[str, Any]]] = {
    "enable_thinking": {
        "show": {"enable_thinking": True},
        "skip": {"enable_thinking": False},
    },
    "chat_template_kwargs": {
        "show": {"chat_template_kwargs": {"enable_thinking": True}},
        "skip": {"chat_template_kwargs": {"enable_thinking": False}},
    },
    # Ollama's /v1 turns thinking off only for this value; it thinks by default.
    "reasoning_effort": {"skip": {"reasoning_effort": "none"}},
}


@dataclass(frozen=True, slots=True)
class ReasoningModel:
    """An OpenAI reasoning model family: no sampling settings, its own token field."""

    prefix: str
    # The lowest reasoning_effort it accepts, sent for thinking "skip"; "" = none to send.
    least_effort: str


# Longest prefix first: the first match decides.
REASONING_MODELS = (
    ReasoningModel("gpt-5-pro", ""),  # high effort only
    ReasoningModel("gpt-5.", "none"),  # gpt-5.1 and later refuse "minimal"
    ReasoningModel("gpt-5", "minimal"),
    ReasoningModel("o1", "low"),
    ReasoningModel("o3", "low"),
    ReasoningModel("o4", "low"),
)


def reasoning_model(model: str) -> ReasoningModel | None:
    """The reasoning family of `model`, or None for a model that takes temperature."""
    name = model.lower()
    # gpt-5-chat-latest and its successors are chat models: temperature, no effort.
    if name.startswith("gpt-5") and "-chat" in name:
        return None
    return next((r for r in REASONING_MODELS if name.startswith(r.prefix)), None)


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
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": _content(m)} for m in request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        reasoning = reasoning_model(request.model)
        # Reasoning models refuse any temperature or top_p but their default.
        if request.temperature is not None and reasoning is None:
            body["temperature"] = request.temperature
        if request.top_p is not None and reasoning is None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.max_tokens is not None:
            host = (urlsplit(base).hostname or "").lower()
            official = any(host == h or host.endswith("." + h) for h in OPENAI_HOSTS)
            # Reasoning models refuse max_tokens wherever they are served from.
            field = "max_completion_tokens" if official or reasoning else "max_tokens"
            body[field] = request.max_tokens
        if reasoning is not None:
            if request.thinking == "skip" and reasoning.least_effort:
                body["reasoning_effort"] = reasoning.least_effort
        else:
            switch = THINKING_SWITCHES.get(self.spec.thinking_switch, {})
            body.update(switch.get(request.thinking, {}))
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
        splitter = ThinkSplitter()
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
                    thought = delta.get("reasoning_content") or delta.get("reasoning")
                    if thought and isinstance(thought, str):
                        yield ThinkingDelta(thought)
                    text = delta.get("content") or delta.get("refusal")
                    if text:
                        for part in splitter.feed(text):
                            yield part
                    finish = choice.get("finish_reason") or finish
                reported = data.get("usage")
                if isinstance(reported, dict):
                    usage = Usage(
                        int(reported.get("prompt_tokens") or 0),
                        int(reported.get("completion_tokens") or 0),
                    )
        # Some compatible servers omit [DONE]; a finish_reason says the reply is whole too.
        for part in splitter.close():
            yield part
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

    async def keep_alive(self, creds: Credentials, model: str, minutes: int) -> Ping:
        ways: dict[str, Callable[[Credentials, str, int], Awaitable[str]]] = {
            "ollama": self._ollama_load,
            "one_token": self._one_token,
        }
        way = ways.get(self.spec.keep_alive)
        if way is None:
            return keep_alive_refused(self.spec.label)
        name = model or self.spec.default_model
        return await http.timed_call(lambda: way(creds, name, minutes))

    async def _ollama_load(self, creds: Credentials, model: str, minutes: int) -> str:
        # Ollama's native API lives at the host root, beside the /v1 compatibility one.
        root = VERSIONED.sub("", self._base(creds))
        body = {"model": model, "keep_alive": f"{minutes}m", "stream": False}
        await http.request_json(
            self._target(creds, model),
            "POST",
            f"{root}/api/generate",
            headers=self._headers(creds),
            body=body,
        )
        return f"{model} is loaded and kept for {minutes} min."

    async def _one_token(self, creds: Credentials, model: str, minutes: int) -> str:
        # The server keeps a model loaded while it is used: asking for one token is
        # the one way every OpenAI-compatible server understands.
        request = ChatRequest(model, (ChatMessage("user", "Hi"),), max_tokens=1)
        async for _event in self.stream(request, creds):
            pass  # run to its end: an error leaves as the ProviderError it is
        return f"{model} answered; it is loaded."


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """The text alone, or with images, the list of content parts."""
    if not message.images:
        return message.content
    return [{"type": "text", "text": message.content}, *map(_image_part, message.images)]


def _image_part(image: Image) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{image.media_type};base64,{image.data}"},
    }


def _is_done(event: http.SSEEvent) -> bool:
    return event.data.strip() == "[DONE]"
