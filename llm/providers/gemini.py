"""Google's Gemini API (the Generative Language API).

Wire format: https://ai.google.dev/api/generate-content. The base URL ends in the API
version (`https://generativelanguage.googleapis.com/v1beta`); the adapter adds
`/models/{model}:streamGenerateContent?alt=sse`. The key travels only in the
`x-goog-api-key` header, never in the URL, so no error or log can carry it. A stream has
no end marker: the reply is whole when a candidate reports its `finishReason`, judged on
the parsed chunk (a Gemini-dialect server such as LiteLLM's sends `"finishReason": null`
on every chunk before the last).

Thinking (https://ai.google.dev/gemini-api/docs/thinking): parts marked `"thought":
true` are thought summaries, yielded as ThinkingDelta; Gemini sends them only when
asked, which thinking "show" does with `generationConfig.thinkingConfig.includeThoughts`;
"skip" sends `thinkingBudget: 0` (models that cannot stop thinking refuse it).

Images (ChatMessage.images) are `inline_data` parts (`{"mime_type": "image/png", "data":
base64}`) before the message's text part
(https://ai.google.dev/gemini-api/docs/image-understanding, "Passing inline image data").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote

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
    Refused,
    TextDelta,
    ThinkingDelta,
    Usage,
)

ROLES = {"user": "user", "assistant": "model"}
FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
THINKING_CONFIG: dict[str, dict[str, Any]] = {
    "show": {"includeThoughts": True},
    "skip": {"thinkingBudget": 0},
}


class GeminiProvider(Provider):
    kind = "gemini"

    def _target(self, creds: Credentials, model: str = "") -> http.Target:
        return http.Target(self.spec.label, self.options, secret=creds.api_key, model=model)

    def _base(self, creds: Credentials) -> str:
        return (creds.base_url or self.spec.default_base_url).strip().rstrip("/")

    def _headers(self, creds: Credentials) -> dict[str, str]:
        key = creds.api_key.strip()
        if not key and self.spec.needs_key:
            raise AuthFailed(f"No API key is set for {self.spec.label}: add one in Settings → LLM.")
        return {"x-goog-api-key": key} if key else {}

    def _url(self, creds: Credentials, model: str, method: str) -> str:
        name = model.removeprefix("models/")
        return f"{self._base(creds)}/models/{quote(name, safe='-._')}:{method}"

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        system = [request.system] if request.system else []
        system += [m.content for m in request.messages if m.role == "system"]
        body: dict[str, Any] = {
            "contents": [
                {"role": ROLES[m.role], "parts": _parts(m)}
                for m in request.messages
                if m.role != "system"
            ]
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        thinking = THINKING_CONFIG.get(request.thinking)
        if thinking:
            config["thinkingConfig"] = thinking
        if config:
            body["generationConfig"] = config
        return body

    def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[Event]:
        return http.with_retries(
            self.options, lambda deadline: self._attempt(request, creds, deadline)
        )

    async def _attempt(
        self, request: ChatRequest, creds: Credentials, deadline: float
    ) -> AsyncGenerator[Event, None]:
        target = self._target(creds, request.model)
        url = self._url(creds, request.model, "streamGenerateContent") + "?alt=sse"
        headers = {**self._headers(creds), "Accept": "text/event-stream"}
        body = self._body(request)
        finish = ""
        usage: Usage | None = None
        # stream_events asks is_final about an event after this loop has handled it,
        # so the loop's verdict on the parsed chunk answers: each chunk parsed once.
        last = False
        events = http.stream_events(
            target,
            "POST",
            url,
            headers=headers,
            body=body,
            is_final=lambda _event: last,
            deadline=deadline,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                data = http.parse_json(target, event.data)
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    raise http.error_in_stream(target.label, data, secret=creds.api_key)
                blocked = (data.get("promptFeedback") or {}).get("blockReason")
                if blocked:
                    raise Refused(
                        f"{target.label} declined to answer this message ({blocked.lower()}): "
                        "rephrase it and try again."
                    )
                for candidate in data.get("candidates") or ():
                    for part in (candidate.get("content") or {}).get("parts") or ():
                        text = part.get("text")
                        if text and isinstance(text, str):
                            yield ThinkingDelta(text) if part.get("thought") else TextDelta(text)
                    reason = candidate.get("finishReason")
                    if reason and isinstance(reason, str):
                        finish = FINISH.get(reason, reason.lower())
                        last = True
                meta = data.get("usageMetadata")
                if isinstance(meta, dict):
                    # Thinking tokens are billed as output.
                    out = int(meta.get("candidatesTokenCount") or 0)
                    out += int(meta.get("thoughtsTokenCount") or 0)
                    usage = Usage(int(meta.get("promptTokenCount") or 0), out)
        if not finish:
            raise http.ended_early(target)
        if usage is not None:
            yield usage
        yield Done(finish)

    async def list_models(self, creds: Credentials) -> list[str]:
        return await http.call_with_retries(self.options, lambda: self._models(creds))

    async def _models(self, creds: Credentials) -> list[str]:
        url = f"{self._base(creds)}/models?pageSize=1000"
        items = await http.model_list(
            self._target(creds), url, headers=self._headers(creds), field="models"
        )
        return [
            str(m["name"]).removeprefix("models/")
            for m in items
            if m.get("name")
            and "generateContent" in (m.get("supportedGenerationMethods") or ["generateContent"])
        ]

    async def ping(self, creds: Credentials) -> Ping:
        return await http.timed_ping(lambda: self._models(creds))


def _parts(message: ChatMessage) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"inline_data": {"mime_type": image.media_type, "data": image.data}}
        for image in message.images
    ]
    parts.append({"text": message.content})
    return parts
