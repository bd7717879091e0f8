"""The OpenAI adapter, for every OpenAI-compatible kind, against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest

from llm.providers import registry
from llm.providers.base import (
    AuthFailed,
    BadRequest,
    ChatMessage,
    ChatRequest,
    ContextTooLong,
    Credentials,
    Provider,
    RateLimited,
    TextDelta,
    TimedOut,
    Unavailable,
)
from llm.providers.http import ProtocolError
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.conftest import FAST, collect

OPENAI_KINDS = [kind for kind, e in registry.PROVIDERS.items() if e.adapter == registry.OPENAI]


def test_every_openai_compatible_kind_is_covered() -> None:
    assert set(OPENAI_KINDS) == {
        "openai",
        "qwen",
        "huggingface",
        "azure_openai",
        "ollama",
        "lmstudio",
        "llamacpp",
        "vllm",
        "openai_compatible",
    }


def provider(kind: str = "openai") -> Provider:
    return registry.create(kind, FAST)


def creds(fake: FakeOpenAI, kind: str = "openai", **overrides: str) -> Credentials:
    if kind == "azure_openai":
        return fake.credentials(base_url=fake.azure_base_url, **overrides)
    return fake.credentials(**overrides)


def ask(text: str = "Say hello", model: str = "gpt-4o", **kw: object) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", text),), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=OPENAI_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- the normal stream ------------------------------------------------------------


async def test_streams_the_exact_text_and_usage(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.reply("Hello, Alice! How are you?", usage=(21, 9))
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.error is None
    assert out.text == "Hello, Alice! How are you?"
    assert len(out.deltas) > 1  # streamed, not buffered into one piece
    assert (out.usage.input_tokens, out.usage.output_tokens) == (21, 9)  # type: ignore[union-attr]
    assert out.done is not None and out.done.finish_reason == "stop"


async def test_sends_the_documented_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("ok")
    request = ask("Hi", system="Be brief.", temperature=0.2, max_tokens=50)
    await collect(provider().stream(request, creds(fake_openai)))
    sent = fake_openai.chat_requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent.json["stream"] is True
    assert sent.json["stream_options"] == {"include_usage": True}
    assert sent.json["temperature"] == 0.2
    assert sent.json["max_tokens"] == 50  # a compatible server: 127.0.0.1 is not openai.com


async def test_azure_uses_deployment_path_version_and_api_key_header(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.reply("from azure")
    c = creds(fake_openai, "azure_openai", api_version="2024-06-01")
    out = await collect(provider("azure_openai").stream(ask(model="my-gpt4o"), c))
    assert out.text == "from azure"
    sent = fake_openai.chat_requests[0]
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}
    assert sent.headers["api-key"] == fake_openai.api_key
    assert "authorization" not in sent.headers


async def test_keyless_servers_send_no_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.require_key = False
    fake_openai.reply("local answer")
    out = await collect(provider("ollama").stream(ask(), creds(fake_openai, api_key="")))
    assert out.text == "local answer"
    assert "authorization" not in fake_openai.chat_requests[0].headers


async def test_a_kind_that_needs_a_key_refuses_to_call_without_one(
    fake_openai: FakeOpenAI,
) -> None:
    out = await collect(provider("openai").stream(ask(), creds(fake_openai, api_key="")))
    assert isinstance(out.error, AuthFailed)
    assert "Settings" in out.error.message
    assert fake_openai.requests == []


async def test_no_base_url_is_a_clear_error(fake_openai: FakeOpenAI) -> None:
    out = await collect(provider("azure_openai").stream(ask(), Credentials(api_key="k")))
    assert isinstance(out.error, BadRequest)
    assert "base URL" in out.error.message


# --- failures ---------------------------------------------------------------------


async def test_wrong_key_is_auth_failed_without_the_key(fake_openai: FakeOpenAI, kind: str) -> None:
    bad = "sk-wrong-key-abcdefghijklmnop"
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind, api_key=bad)))
    assert isinstance(out.error, AuthFailed)
    assert "rejected the API key" in out.error.message
    assert bad not in out.error.message and "abcdefghijklmnop" not in out.error.message
    assert len(fake_openai.chat_requests) == 1  # a bad key is not retried


async def test_429_with_retry_after_then_success(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.fail(429, retry_after=0.2).reply("after the wait")
    started = asyncio.get_running_loop().time()
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.text == "after the wait"
    assert len(fake_openai.chat_requests) == 2
    assert asyncio.get_running_loop().time() - started >= 0.2  # the wait was honoured


async def test_429_every_time_gives_up_with_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, retry_after=1)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, RateLimited)
    assert out.error.retry_after == 1
    assert len(fake_openai.chat_requests) == 3  # the first try and max_retries=2


async def test_retry_after_longer_than_the_budget_is_not_waited(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, retry_after=60)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, RateLimited)
    assert "try again in 60 s" in out.error.message
    assert len(fake_openai.chat_requests) == 1


async def test_500_is_retried_then_unavailable(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.fail(500)
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, Unavailable)
    assert "(500)" in out.error.message
    assert len(fake_openai.chat_requests) == 3


async def test_503_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(503, retry_after=0).reply("recovered")
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert out.text == "recovered"


async def test_400_is_not_retried_and_says_what_the_provider_said(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.fail(400, body={"error": {"message": "Unknown parameter: 'foo'.", "type": "x"}})
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, BadRequest)
    assert "Unknown parameter: 'foo'." in out.error.message
    assert len(fake_openai.chat_requests) == 1


async def test_context_too_long(fake_openai: FakeOpenAI) -> None:
    message = "This model's maximum context length is 128000 tokens."
    fake_openai.fail(
        400,
        body={"error": {"message": message, "type": "invalid_request_error", "code": "x"}},
    )
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, ContextTooLong)
    assert "new conversation" in out.error.message


async def test_404_names_the_model_and_base_url(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(404)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, BadRequest)
    assert "model name" in out.error.message and "base URL" in out.error.message


async def test_slow_first_byte_times_out(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.reply("too late", first_byte_delay=3)
    options = replace(FAST, max_retries=0)
    out = await collect(registry.create(kind, options).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, TimedOut)
    assert "did not start answering within 1 s" in out.error.message


async def test_silence_mid_stream_times_out_and_keeps_the_text(
    fake_openai: FakeOpenAI, kind: str
) -> None:
    fake_openai.scenario("silence", "one two three four five six")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, TimedOut)
    assert "went silent for 0.5 s" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert len(fake_openai.chat_requests) == 1  # never retried once text was delivered
    assert await fake_openai.closed(2)  # the upstream was closed, not left hanging


async def test_dropped_connection_keeps_the_text(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.scenario("drop", "one two three four five six")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, Unavailable)
    assert "dropped" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert len(fake_openai.chat_requests) == 1


async def test_early_end_is_an_error_that_keeps_the_text(
    fake_openai: FakeOpenAI, kind: str
) -> None:
    fake_openai.scenario("early_end", "the whole text arrives")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.text == "the whole text arrives"
    assert isinstance(out.error, Unavailable)
    assert "ended the reply early" in out.error.message


async def test_error_event_mid_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.scenario("error_midstream", "partial answer here")
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, Unavailable)
    assert out.text and "partial answer here".startswith(out.text)
    assert len(fake_openai.chat_requests) == 1


async def test_multibyte_character_split_across_writes(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.scenario("split_utf8")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.error is None
    assert out.text == "Café ☕ naïve 😀 ok"


async def test_sse_event_split_across_writes(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.scenario("split_event", "split events still arrive whole")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.error is None
    assert out.text == "split events still arrive whole"
    assert out.usage is not None


async def test_crlf_and_keepalive_comments(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.reply("windows line ends", line_ending="\r\n", keepalive=True, split="event")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert out.error is None
    assert out.text == "windows line ends"


async def test_malformed_json(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.scenario("malformed_json")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, ProtocolError)
    assert "could not read" in out.error.message


async def test_html_page_with_status_200(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.scenario("html_200")
    out = await collect(provider(kind).stream(ask(), creds(fake_openai, kind)))
    assert isinstance(out.error, ProtocolError)
    assert "HTML page instead of JSON: is the base URL right?" in out.error.message
    assert "<" not in out.error.message


async def test_no_retry_after_the_first_token(fake_openai: FakeOpenAI) -> None:
    fake_openai.scenario("drop", "some text first").reply("a second answer")
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, Unavailable)
    assert "a second answer" not in out.text
    assert len(fake_openai.chat_requests) == 1


async def test_closing_the_stream_closes_the_upstream(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("word " * 200, chunks=["word "] * 200, delay=0.05)
    events = provider().stream(ask(), creds(fake_openai))
    first = await anext(aiter(events))
    assert isinstance(first, TextDelta)
    with contextlib.suppress(AttributeError):
        await events.aclose()  # type: ignore[attr-defined]
    assert await fake_openai.closed(2)


async def test_cancelling_the_task_closes_the_upstream(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("word " * 200, chunks=["word "] * 200, delay=0.05)
    got: list[str] = []

    async def consume() -> None:
        async for event in provider().stream(ask(), creds(fake_openai)):
            if isinstance(event, TextDelta):
                got.append(event.text)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await fake_openai.closed(2)


# --- models and ping --------------------------------------------------------------


async def test_list_models(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.models = ["gpt-4o", "gpt-4o-mini", "o3-mini"]
    models = await provider(kind).list_models(creds(fake_openai, kind))
    assert models == ["gpt-4o", "gpt-4o-mini", "o3-mini"]


async def test_ping_ok(fake_openai: FakeOpenAI, kind: str) -> None:
    ping = await provider(kind).ping(creds(fake_openai, kind))
    assert ping.ok
    assert ping.models == 3
    assert ping.latency_ms > 0
    assert ping.detail == "3 models available"


async def test_ping_with_a_wrong_key(fake_openai: FakeOpenAI) -> None:
    ping = await provider().ping(creds(fake_openai, api_key="sk-nope-nope-nope"))
    assert not ping.ok
    assert ping.error is not None and ping.error["code"] == "provider_auth"
    assert "rejected the API key" in ping.detail


async def test_ping_an_html_page(fake_openai: FakeOpenAI) -> None:
    ping = await provider().ping(creds(fake_openai, base_url=fake_openai.origin + "/nowhere"))
    assert not ping.ok
    assert ping.error is not None
