"""What a hostile or broken server can send, and where Coppertone stops reading it.

The per-kind endings (a 16 MB line, a 16 MB event, a drip, an endless reply) are in
scenarios.py; here are the parser's caps, the turn deadline across retries and the first
byte, the cap on non-streamed answers, and the settings they come from.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from django.conf import settings as django_settings

from llm.models import provider_options
from llm.providers import http, registry
from llm.providers.base import TimedOut, TooLarge, Unavailable
from llm.providers.sse import SSEEvent, SSEParser, SSETooLarge
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.conftest import FAST, collect
from tests.providers.scenarios import ask

MB = 1024 * 1024

# --- the parser's caps ---------------------------------------------------------------


def test_a_line_at_the_cap_passes_and_one_byte_more_is_refused() -> None:
    at_cap = b"data: " + b"x" * (100 - 6)
    assert SSEParser(max_line=100).feed(at_cap + b"\n\n") == [SSEEvent("message", "x" * 94)]
    with pytest.raises(SSETooLarge) as caught:
        SSEParser(max_line=100).feed(at_cap + b"y\n\n")
    assert (caught.value.what, caught.value.limit) == ("line", 100)


def test_an_unfinished_line_is_refused_as_soon_as_it_passes_the_cap() -> None:
    parser = SSEParser(max_line=100)
    for _ in range(10):
        assert parser.feed(b"data: " + b"x" * 4) == []  # 100 bytes so far: at the cap
    with pytest.raises(SSETooLarge):
        parser.feed(b"x")


def test_many_short_lines_are_not_one_long_line() -> None:
    parser = SSEParser(max_line=100, max_event=100)
    events = []
    for _ in range(1000):
        events += parser.feed(b"data: " + b"x" * 60 + b"\n\n")
    assert len(events) == 1000


def test_an_event_of_many_lines_is_refused_past_the_event_cap() -> None:
    parser = SSEParser(max_line=100, max_event=250)
    assert parser.feed(b"data: " + b"x" * 94 + b"\n") == []
    assert parser.feed(b"data: " + b"x" * 94 + b"\n") == []
    with pytest.raises(SSETooLarge) as caught:
        parser.feed(b"data: " + b"x" * 94 + b"\n")
    assert caught.value.what == "event"


def test_the_events_before_an_oversized_line_are_kept() -> None:
    with pytest.raises(SSETooLarge) as caught:
        SSEParser(max_line=100).feed(b"data: one\n\ndata: two\n\ndata: " + b"x" * 200)
    assert caught.value.events == [SSEEvent("message", "one"), SSEEvent("message", "two")]


def test_a_16_mb_line_is_parsed_in_linear_time() -> None:
    # Quadratic parsing (joining and searching the whole unfinished line on every read)
    # took 83 s for this on the machine where it was measured; linear takes milliseconds.
    parser = SSEParser(max_line=32 * MB, max_event=32 * MB)
    piece = b"x" * 16 * 1024
    started = time.perf_counter()
    parser.feed(b"data: ")
    for _ in range(1024):
        parser.feed(piece)
    events = parser.feed(b"\n\n")
    assert time.perf_counter() - started < 2.0
    assert len(events) == 1 and len(events[0].data) == 16 * MB


# --- through a real stream -------------------------------------------------------------


async def test_a_16_mb_line_under_a_raised_cap_is_read_to_its_end(
    fake_openai: FakeOpenAI,
) -> None:
    # With the cap above it, the whole line is received and parsed, then the server goes
    # silent: proof that reading it costs time linear in its size, on the event loop.
    fake_openai.scenario("huge_line", "one two three")
    options = dataclasses.replace(FAST, max_sse_line_bytes=32 * MB, max_event_bytes=32 * MB)
    started = time.monotonic()
    out = await collect(
        registry.create("openai", options).stream(ask("gpt-4o"), fake_openai.credentials())
    )
    assert isinstance(out.error, TimedOut)
    assert "went silent for 0.5 s" in out.error.message
    assert out.text == "one two "  # half the reply came before the line
    assert time.monotonic() - started < 5.0


async def test_a_reply_exactly_at_the_cap_is_whole(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("x" * 400)
    options = dataclasses.replace(FAST, max_reply_chars=400)
    out = await collect(
        registry.create("openai", options).stream(ask("gpt-4o"), fake_openai.credentials())
    )
    assert out.error is None and out.done is not None
    assert out.text == "x" * 400


async def test_the_deadline_counts_the_retries(fake_openai: FakeOpenAI) -> None:
    # The provider asks for 1 s; the whole reply may take 0.5 s: give up at once.
    fake_openai.fail(503, retry_after=1).reply("too late")
    options = dataclasses.replace(FAST, turn_deadline=0.5)
    started = time.monotonic()
    out = await collect(
        registry.create("openai", options).stream(ask("gpt-4o"), fake_openai.credentials())
    )
    assert isinstance(out.error, Unavailable)
    assert len(fake_openai.chat_requests) == 1
    assert time.monotonic() - started < 0.5


async def test_the_deadline_bounds_the_wait_for_the_first_byte(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("too late", first_byte_delay=2)
    options = dataclasses.replace(FAST, turn_deadline=0.3, max_retries=0)
    out = await collect(
        registry.create("openai", options).stream(ask("gpt-4o"), fake_openai.credentials())
    )
    assert isinstance(out.error, TimedOut)
    assert "took longer than 0.3 s, the most one reply may take" in out.error.message


# --- non-streamed answers ---------------------------------------------------------------


def _many_models(fake: FakeOpenAI) -> None:
    # About 6 MB of model list: past the 4 MB cap.
    fake.models = [f"model-{i:07d}-" + "x" * 40 for i in range(60_000)]


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_model_list_past_the_cap_is_refused_in_words(
    fake_openai: FakeOpenAI, chunked: bool
) -> None:
    _many_models(fake_openai)
    fake_openai.chunked_json = chunked  # without Content-Length it is counted as it comes
    with pytest.raises(TooLarge) as caught:
        await registry.create("openai", FAST).list_models(fake_openai.credentials())
    assert caught.value.message == (
        "OpenAI sent an answer larger than 4 MB, more than Coppertone reads: is the base URL right?"
    )


async def test_a_model_list_under_a_raised_cap_is_read(fake_openai: FakeOpenAI) -> None:
    _many_models(fake_openai)
    options = dataclasses.replace(FAST, max_body_bytes=16 * MB)
    assert (
        len(await registry.create("openai", options).list_models(fake_openai.credentials()))
        == 60_000
    )


async def test_a_model_list_in_several_reads_is_read_whole(fake_openai: FakeOpenAI) -> None:
    # The answer arrives in two writes 20 ms apart: all of it is read, not the first part.
    fake_openai.models = [f"model-{i:04d}" for i in range(2000)]
    fake_openai.chunked_json = True
    models = await registry.create("openai", FAST).list_models(fake_openai.credentials())
    assert len(models) == 2000


async def test_a_drip_fed_model_list_ends_at_the_deadline(fake_openai: FakeOpenAI) -> None:
    # An answer that comes a byte at a time, each well within the idle timeout.
    target = http.Target("OpenAI", dataclasses.replace(FAST, turn_deadline=0.3))
    fake_openai.scenario("drip", drip_every=0.05)
    url = f"{fake_openai.base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {fake_openai.api_key}"}
    body = {"model": "gpt-4o", "messages": [], "stream": True}
    with pytest.raises(TimedOut) as caught:
        await http.request_json(target, "POST", url, headers=headers, body=body)
    assert caught.value.message == "OpenAI took longer than 0.3 s to answer; try again."
    assert await fake_openai.closed(2)


# --- where the numbers come from ----------------------------------------------------------


def test_the_caps_and_the_deadline_come_from_settings(settings: Any) -> None:
    settings.LLM_TURN_DEADLINE_SECONDS = 42.0
    settings.LLM_MAX_SSE_LINE_BYTES = 1000
    settings.LLM_MAX_EVENT_BYTES = 2000
    settings.LLM_MAX_REPLY_CHARS = 3000
    settings.LLM_MAX_BODY_BYTES = 4000
    options = provider_options()
    assert (
        options.turn_deadline,
        options.max_sse_line_bytes,
        options.max_event_bytes,
        options.max_reply_chars,
        options.max_body_bytes,
    ) == (42.0, 1000, 2000, 3000, 4000)


def test_the_defaults_are_the_documented_ones() -> None:
    assert django_settings.LLM_TURN_DEADLINE_SECONDS == 600.0
    assert django_settings.LLM_MAX_SSE_LINE_BYTES == django_settings.LLM_MAX_EVENT_BYTES == MB
    assert django_settings.LLM_MAX_REPLY_CHARS == 1_000_000
    assert django_settings.LLM_MAX_BODY_BYTES == 4 * MB


def test_sizes_in_words() -> None:
    assert [http.size_words(n) for n in (MB, 4 * MB, 1536 * 1024, 2048, 100)] == [
        "1 MB",
        "4 MB",
        "1.5 MB",
        "2 KB",
        "100 bytes",
    ]
