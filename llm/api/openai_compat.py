"""The OpenAI-compatible endpoint, /v1/ (API.md): chat completions and models.

The official OpenAI SDKs work unchanged with a Coppertone token as their API key.
The request's messages are the conversation (system messages become the system
prompt; images come as `image_url` parts with data URLs, never fetched from the web);
each call is a recorded turn in a new conversation. Errors have OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`, with an `x-should-retry`
header so that the SDKs do not retry what cannot succeed.

This is the path the benchmark hammers: one token lookup, the engine's two trips,
and per token one `orjson.dumps` of the text between two constant strings. Unlike
/api/v1/chat, a reply here ends with its request: a client that disconnects stops
it, as OpenAI's API does, and the text so far is stored as `stopped`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiToken, User
from llm import attachments, replies
from llm.api.base import bearer_token, strict_json
from llm.api.streaming import sse_response
from llm.events import TextDelta, ThinkingDelta, TurnError, TurnFinished, TurnStarted
from llm.models import ProviderConfig
from llm.providers import registry
from llm.providers.base import ChatMessage, Image
from llm.turns import Turn, run_turn

# Coppertone's error codes as OpenAI's (HTTP status, type, code) and whether retrying helps.
ERRORS: dict[str, tuple[int, str, str, bool]] = {
    "unauthenticated": (401, "invalid_request_error", "invalid_api_key", False),
    "bad_request": (400, "invalid_request_error", "invalid_request", False),
    "too_large": (400, "invalid_request_error", "context_length_exceeded", False),
    "not_found": (404, "invalid_request_error", "not_found", False),
    "not_configured": (400, "invalid_request_error", "model_not_configured", False),
    "busy": (409, "invalid_request_error", "busy", False),
    "rate_limited": (429, "requests", "rate_limit_exceeded", True),
    "budget_exceeded": (429, "insufficient_quota", "insufficient_quota", False),
    "provider_auth": (502, "api_error", "provider_auth", False),
    "provider_rate_limited": (429, "requests", "provider_rate_limited", True),
    "provider_timeout": (504, "api_error", "provider_timeout", True),
    "provider_unavailable": (502, "api_error", "provider_unavailable", True),
    "provider_error": (502, "api_error", "provider_error", False),
    "internal": (500, "server_error", "internal", True),
}

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponse]]


class OpenAIError(TurnError):
    """A TurnError in OpenAI's error shape, with its status and retry hint."""

    def body(self) -> dict[str, Any]:
        _status, kind, code, _retry = ERRORS.get(self.code, ERRORS["internal"])
        return {"error": {"message": self.message, "type": kind, "param": None, "code": code}}

    def response(self) -> JsonResponse:
        status, _kind, _code, retry = ERRORS.get(self.code, ERRORS["internal"])
        response = JsonResponse(self.body(), status=status)
        response["x-should-retry"] = "true" if retry else "false"
        if self.retry_after is not None:
            response["Retry-After"] = str(round(self.retry_after))
        return response


def openai_view(view: AsyncView) -> AsyncView:
    """Bearer-token authentication and OpenAI-shaped errors (no session: this is for SDKs)."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # /v1/ runs without middleware (llm/api/asgi.py): check ALLOWED_HOSTS here.
        request.get_host()
        raw = bearer_token(request)
        user = await ApiToken.aauthenticate(raw) if raw else None
        if user is None:
            return OpenAIError(
                "unauthenticated",
                "Use a Coppertone API token as the API key: create one under Settings → API tokens."
                if raw is None
                else "That API key is not a valid Coppertone token, or it was revoked.",
            ).response()
        request.user = user
        try:
            return await view(request, *args, **kwargs)
        except TurnError as error:
            return OpenAIError.of(error).response()

    return csrf_exempt(wrapper)


# --- the request ---------------------------------------------------------------------------


def _parts(content: Any, index: int) -> tuple[str, tuple[Image, ...]]:
    """A message's text and images: a string, or OpenAI content parts (`text`, and
    `image_url` with a data URL, sniffed and limited by llm/attachments.py)."""
    if isinstance(content, str):
        return content, ()
    if content is None:
        return "", ()
    if not isinstance(content, list):
        raise OpenAIError("bad_request", f"messages[{index}].content must be a string or a list.")
    texts: list[str] = []
    images: list[Image] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            images.append(attachments.inline_image(url, f"messages[{index}].content[{number}]"))
        else:
            raise OpenAIError(
                "bad_request",
                f"messages[{index}].content[{number}]: only text and image_url parts are "
                "supported.",
            )
    attachments.check_count(len(images))
    return "".join(texts), tuple(images)


def _conversation(
    messages: Any,
) -> tuple[str | None, list[ChatMessage], str, tuple[Image, ...]]:
    """(system prompt, the turns before the last, the last user message and its images)."""
    if not isinstance(messages, list) or not messages:
        raise OpenAIError("bad_request", "messages must be a non-empty list.")
    system: list[str] = []
    history: list[ChatMessage] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise OpenAIError("bad_request", f"messages[{index}] must be an object.")
        role = message.get("role")
        text, images = _parts(message.get("content"), index)
        if images and role != "user":
            raise OpenAIError("bad_request", f"messages[{index}]: only user messages take images.")
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            history.append(ChatMessage(role=role, content=text, images=images))
        else:
            raise OpenAIError(
                "bad_request",
                f"messages[{index}].role {role!r} is not supported: use system, user or "
                "assistant (tools are not supported).",
            )
    if not history or history[-1].role != "user":
        raise OpenAIError("bad_request", "The last message must have the role 'user'.")
    last = history.pop()
    return ("\n\n".join(system) if system else None), history, last.content, last.images


def _model(name: Any) -> tuple[str | None, str | None]:
    """`provider/model` names a provider; a bare name is resolved like API.md's `model`."""
    if name in (None, ""):
        return None, None
    if not isinstance(name, str):
        raise OpenAIError("bad_request", "model must be a string.")
    kind, slash, rest = name.partition("/")
    if slash and kind in registry.PROVIDERS:
        return kind, rest or None
    return None, name


def _number(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OpenAIError("bad_request", f"{key} must be a number.")
            if not math.isfinite(value):  # 1e999 parses as infinity
                raise OpenAIError("bad_request", f"{key} must be a finite number.")
            return value  # its range is the engine's rule (Turn._ask), as on every transport
    return None


def _whole(value: int | float | None, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and not value.is_integer():
        raise OpenAIError("bad_request", f"{key} must be a whole number.")
    return int(value)


def _body(request: HttpRequest) -> bytes:
    """The request body; one with images may pass the form cap, up to their own limit."""
    try:
        return request.body
    except RequestDataTooBig:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
        limit = attachments.inline_body_limit()
        if size > limit:
            raise OpenAIError(
                "too_large",
                f"The request is {attachments.size_label(size)}; the limit is "
                f"{attachments.size_label(limit)} ({settings.LLM_MAX_FILES_PER_MESSAGE} images "
                f"of at most {attachments.size_label(settings.LLM_MAX_FILE_BYTES)} each, and "
                "the text).",
            ) from None
        return request.read()


def _turn(request: HttpRequest) -> tuple[Turn, dict[str, Any]]:
    try:
        data = strict_json(_body(request))
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(
            "bad_request", "The body is not valid JSON (NaN and Infinity are not numbers)."
        ) from None
    if not isinstance(data, dict):
        raise OpenAIError("bad_request", "The body must be a JSON object.")
    if data.get("n") not in (None, 1):
        raise OpenAIError("bad_request", "Only n=1 is supported.")
    if data.get("tools"):
        raise OpenAIError("bad_request", "Tools are not supported.")
    system, history, text, images = _conversation(data.get("messages"))
    provider, model = _model(data.get("model"))
    max_tokens = _number(data, "max_completion_tokens", "max_tokens")
    user = request.user
    assert isinstance(user, User)
    turn = run_turn(
        user,
        text,
        provider=provider,
        model=model,
        history=history,
        system=system,
        temperature=_number(data, "temperature"),
        max_tokens=_whole(max_tokens, "max_tokens"),
        render_html=False,
        images=images,
    )
    return turn, data


# --- POST /v1/chat/completions -----------------------------------------------------------------


@openai_view
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """OpenAI's semantics: a client that goes away stops its reply (text so far kept)."""
    if request.method != "POST":
        raise OpenAIError("bad_request", "Use POST.")
    turn, data = _turn(request)
    if data.get("stream"):
        reply = await replies.start(turn)
        options = data.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return sse_response(_chunks(reply, usage))
    async with replies.owned(turn) as reply:
        result = await reply.ended()
    if result.status == "error":
        raise OpenAIError.of(result.failure())
    return JsonResponse(
        {
            "id": f"chatcmpl-{result.message_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{result.provider}/{result.model}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result),
        }
    )


def _usage(result: TurnFinished) -> dict[str, int]:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }


async def _chunks(reply: replies.Reply, usage: bool) -> AsyncIterator[str]:
    """`chat.completion.chunk` frames; a delta is its text between two constant strings."""
    try:
        async for _seq, event in reply.follow():
            if isinstance(event, TurnStarted):
                name = json.dumps(f"{event.provider}/{event.model}")
                envelope = (
                    f'data: {{"id":"chatcmpl-{event.message_id}","object":"chat.completion.chunk",'
                    f'"created":{int(time.time())},"model":{name},"system_fingerprint":null,'
                    '"choices":'
                )
                head = envelope + '[{"index":0,"delta":{"content":'
                thinking_head = envelope + '[{"index":0,"delta":{"reasoning_content":'
                tail = '},"logprobs":null,"finish_reason":null}]}\n\n'
                yield head + '"","role":"assistant"' + tail
            elif type(event) is TextDelta:
                yield head + orjson.dumps(event.text).decode() + tail
            elif type(event) is ThinkingDelta:
                # The field vLLM, DeepSeek and DashScope use: OpenAI SDKs pass it through.
                yield thinking_head + json.dumps(event.text) + tail
            elif isinstance(event, TurnFinished):
                if event.status == "error":
                    yield f"data: {json.dumps(OpenAIError.of(event.failure()).body())}\n\n"
                    return
                finish = json.dumps(event.finish_reason)
                yield (
                    f'{envelope}[{{"index":0,"delta":{{}},"logprobs":null,'
                    f'"finish_reason":{finish}}}]}}\n\n'
                )
                if usage:
                    yield f'{envelope}[],"usage":{json.dumps(_usage(event))}}}\n\n'
        yield "data: [DONE]\n\n"
    finally:
        await reply.stop_and_wait()  # a client that left stops its reply (OpenAI's way)


# --- GET /v1/models ------------------------------------------------------------------------------


@sync_to_async
def _model_ids(user: User) -> list[dict[str, Any]]:
    configs = ProviderConfig.objects.filter(user=user, enabled=True)
    local = registry.spec(registry.LOCAL)
    listed = [(registry.LOCAL, local.default_model, 0)]
    listed += [
        (c.kind, c.effective_model, int(c.created_at.timestamp()))
        for c in configs
        if c.kind != registry.LOCAL
    ]
    return [
        {"id": f"{kind}/{model}", "object": "model", "created": created, "owned_by": kind}
        for kind, model, created in listed
    ]


@openai_view
async def models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        raise OpenAIError("bad_request", "Use GET.")
    user = request.user
    assert isinstance(user, User)
    return JsonResponse({"object": "list", "data": await _model_ids(user)})
