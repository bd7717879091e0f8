"""Pytest fixtures for the fake provider servers (registered in tests/conftest.py).

`fake_openai`, `fake_anthropic`, `fake_gemini` each give a handle on a real HTTP server
on 127.0.0.1 that speaks that provider's wire format. The servers live for the whole
session (in background threads, so sync tests, async tests and a live server all reach
them); each test gets its handle reset: empty queue, no recorded requests, default models.
Using one of these fixtures also allows loopback in `settings.LLM_PRIVATE_HOSTS`, since the
fakes listen on a loopback address that the outbound URL guard refuses otherwise.

The handle:

    fake.base_url        what a user pastes as the base URL for that kind:
                         OpenAI-compatible "http://127.0.0.1:PORT/v1"; Anthropic the
                         host "http://127.0.0.1:PORT"; Gemini "http://127.0.0.1:PORT/v1beta".
                         fake_openai.azure_base_url is the host, for kind azure_openai.
    fake.api_key         the only key it accepts (Bearer / x-api-key / x-goog-api-key /
                         Azure api-key); any other key gets 401 in the provider's shape.
    fake.require_key     True; set False to accept requests without a key (Ollama & co).
    fake.credentials()   Credentials(api_key=fake.api_key, base_url=fake.base_url).
    fake.models          the list its models endpoint returns (editable).
    fake.chunked_json    False; True sends the model list in two writes, chunked, with
                         no Content-Length.

    fake.reply(text="Hello from the fake provider.", *, chunks=None, delay=0.0,
               first_byte_delay=0.0, usage=None, finish_reason="", thinking="")
        queue a reply: streamed as `chunks` (default: 4 characters each) with `delay`
        seconds between chunks, after `first_byte_delay` seconds of nothing; a
        non-streaming request gets the whole text. usage=(input, output) tokens,
        default (12, number of chunks).
        thinking="pondering" streams that reasoning first (4 characters a chunk), in
        each provider's own shape: OpenAI `delta.reasoning_content` deltas, Anthropic
        a `thinking` block (thinking_delta deltas, then a signature_delta) before the
        text block, Gemini parts with `"thought": true`. Options of that shape:
          thinking_field="reasoning_content" (OpenAI): or "reasoning" (Ollama, newer
                       vLLM), or "think_tags" (`<think>pondering</think>\n\n` at the
                       start of the content, the tags cut across chunks);
          redacted_thinking=True (Anthropic): a redacted_thinking block before the text.
    fake.fail(status, *, retry_after=None, body=None, first_byte_delay=0.0)
        queue an error response in the provider's own error shape (body: a dict or
        raw text replaces it), with a Retry-After header when given.
    fake.scenario(name, text=None, **reply_options)
        queue a misbehaving stream: "silence" (half the reply, then nothing),
        "drop" (half the reply, then the connection closes), "early_end" (the whole
        text but no final event), "error_midstream" (half, then the provider's
        in-stream error event), "hold_open" (the whole reply, then the connection
        stays open), "malformed_json", "html_200" (an HTML page, status 200),
        "split_utf8" (a multi-byte character split across writes), "split_event" (every
        SSE event split across writes), "crlf" (\\r\\n line endings), "keepalive"
        (`: keep-alive` comments between events), "finish_reason_null" (Gemini only:
        `"finishReason": null` on every chunk but the last, as LiteLLM's Gemini
        endpoint sends it).
        Hostile ones: "huge_line" (half the reply, then a `data:` line of `huge_bytes`,
        16 MB, with no newline), "huge_event" (half, then 16 MB of `data:` lines that
        never reach their blank line), "drip" (half, then a newline every `drip_every`
        seconds, 59 by default, until the client hangs up), "endless" (the content
        frames over and over, never the end; `delay` paces them).
        The reply/scenario options combine: fake.reply("hi", split="event", keepalive=True);
        reply(..., content_type="text/plain") relabels a stream.

    Queued answers are used in order and the last one repeats, so
    `fake.fail(429, retry_after=0).reply("ok")` is one 429 and then "ok" every time, and
    `fake.fail(500)` alone fails every request. Once that repeating last answer has
    served a request, whatever is queued next replaces it (reply("a"), a request,
    reply("b"): the next request gets "b"). With nothing queued: the default reply.

    fake.requests        every request received: Recorded(method, path, query: dict,
                         headers: dict with lower-case names, json, url=path+query).
    fake.chat_requests   only the POSTs.
    fake_openai.keep_alive_requests   the keep-alive requests among them: Ollama's load
                         request (POST /api/generate at the host root, which the fake
                         answers `{"done": true, "done_reason": "load"}` without using
                         the queue) and one-token chat requests (max_tokens or
                         max_completion_tokens 1), which take the next queued answer
                         like any chat request.
    fake.wait_closed(timeout) -> bool   (sync tests) True once a client closed a stream
                         before it finished, e.g. after Stop.
    await fake.closed(timeout) -> bool  the same for async tests; it does not block the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI, settings: Any) -> Iterator[FakeOpenAI]:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()


@pytest.fixture(scope="session")
def _fake_anthropic_server() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def fake_anthropic(_fake_anthropic_server: FakeAnthropic, settings: Any) -> Iterator[FakeAnthropic]:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    _fake_anthropic_server.reset()
    yield _fake_anthropic_server
    _fake_anthropic_server.reset()


@pytest.fixture(scope="session")
def _fake_gemini_server() -> Iterator[FakeGemini]:
    server = FakeGemini().start()
    yield server
    server.stop()


@pytest.fixture
def fake_gemini(_fake_gemini_server: FakeGemini, settings: Any) -> Iterator[FakeGemini]:
    settings.LLM_PRIVATE_HOSTS = ["127.0.0.0/8"]
    _fake_gemini_server.reset()
    yield _fake_gemini_server
    _fake_gemini_server.reset()
