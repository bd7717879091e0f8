"""The scenarios every adapter must pass against its fake, written once.

Each provider's test module imports these tests and defines the fixtures they use:
`kind` (the registry kind, parametrised over every kind the adapter serves), `fake`
(the fake server handle), `creds` (Credentials that reach the fake for that kind) and
`model` (a model name to ask for).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from llm.providers import registry
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ChatRequest,
    Credentials,
    Provider,
    RateLimited,
    TextDelta,
    TimedOut,
    TooLarge,
    Unavailable,
)
from llm.providers.http import ProtocolError
from tests.fakes.server import FakeServer
from tests.providers.conftest import FAST, TIGHT, collect


def ask(model: str, text: str = "Say hello") -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", text),))


def adapter(kind: str) -> Provider:
    return registry.create(kind, FAST)


async def test_streams_the_exact_text_and_usage(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply("Hello, Alice! How are you?", usage=(21, 9))
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "Hello, Alice! How are you?"
    assert len(out.deltas) > 1  # streamed, not buffered into one piece
    assert out.usage is not None
    assert (out.usage.input_tokens, out.usage.output_tokens) == (21, 9)
    assert out.done is not None and out.done.finish_reason == "stop"


async def test_max_tokens_finish_is_reported(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply("cut off", finish_reason="length")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.text == "cut off"
    assert out.done is not None and out.done.finish_reason == "length"


async def test_wrong_key_is_auth_failed_without_the_key(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    bad = "sk-wrong-key-abcdefghijklmnop"
    wrong = Credentials(api_key=bad, base_url=creds.base_url, api_version=creds.api_version)
    out = await collect(adapter(kind).stream(ask(model), wrong))
    assert isinstance(out.error, AuthFailed)
    assert "rejected the API key: check it in Settings → LLM" in out.error.message
    assert "abcdefghijklmnop" not in out.error.message
    assert len(fake.chat_requests) == 1  # a bad key is not retried


async def test_429_with_retry_after_then_success(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.fail(429, retry_after=0.1).reply("after the wait")
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "after the wait"
    assert len(fake.chat_requests) == 2
    assert loop.time() - started >= 0.1  # the provider's wait was honoured


async def test_429_every_time_gives_up_with_retry_after(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.fail(429, retry_after=0.05)
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, RateLimited)
    assert out.error.retry_after == 0.05
    assert "try again in" in out.error.message
    assert len(fake.chat_requests) == 3  # the first try and max_retries=2


async def test_500_is_retried_then_unavailable(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.fail(500, retry_after=0)
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, Unavailable)
    assert "(500)" in out.error.message and "try again" in out.error.message
    assert len(fake.chat_requests) == 3


async def test_529_overloaded_then_success(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.fail(529, retry_after=0).reply("back again")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.text == "back again"
    assert len(fake.chat_requests) == 2


async def test_529_every_time_says_overloaded(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.fail(529, retry_after=0)
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, Unavailable)
    assert "overloaded" in out.error.message


async def test_slow_first_byte_times_out(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply("too late", first_byte_delay=2)
    out = await collect(registry.create(kind, TIGHT).stream(ask(model), creds))
    assert isinstance(out.error, TimedOut)
    assert "did not start answering within 0.3 s" in out.error.message


async def test_silence_mid_stream_times_out_and_keeps_the_text(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("silence", "one two three four five six")
    out = await collect(registry.create(kind, TIGHT).stream(ask(model), creds))
    assert isinstance(out.error, TimedOut)
    assert "went silent for 0.2 s" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert await fake.closed(2)  # the upstream was closed, not left hanging


async def test_dropped_connection_keeps_the_text(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("drop", "one two three four five six")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, Unavailable)
    assert "dropped in the middle of the reply" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)


async def test_no_retry_after_the_first_token(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("drop", "some text first").reply("a second answer")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, Unavailable)
    assert out.text and "a second answer" not in out.text
    assert len(fake.chat_requests) == 1


async def test_early_end_is_an_error_that_keeps_the_text(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("early_end", "the whole text arrives")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.text == "the whole text arrives"
    assert isinstance(out.error, Unavailable)
    assert "ended the reply early; what arrived is kept" in out.error.message


async def test_a_stream_held_open_after_its_end_still_finishes(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("hold_open", "all of it arrived")
    out = await collect(registry.create(kind, TIGHT).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "all of it arrived"
    assert out.done is not None
    assert await fake.closed(2)  # and the connection was let go


async def test_error_event_mid_stream_keeps_the_text(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("error_midstream", "partial answer here")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, Unavailable)
    assert out.text and "partial answer here".startswith(out.text)
    assert len(fake.chat_requests) == 1


async def test_multibyte_character_split_across_writes(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("split_utf8")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "Café ☕ naïve 😀 ok"
    assert "\ufffd" not in out.text


async def test_sse_event_split_across_writes(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("split_event", "split events still arrive whole")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "split events still arrive whole"
    assert out.usage is not None


async def test_crlf_keepalive_and_splits_together(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply("windows ☕ line ends", line_ending="\r\n", keepalive=True, split="event")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "windows ☕ line ends"


async def test_keepalive_comments(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("keepalive", "kept alive")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "kept alive"


async def test_crlf_line_endings(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("crlf", "carriage returns")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert out.error is None
    assert out.text == "carriage returns"


async def test_malformed_json(fake: FakeServer, kind: str, creds: Credentials, model: str) -> None:
    fake.scenario("malformed_json")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, ProtocolError)
    assert "could not read (malformed JSON)" in out.error.message


async def test_html_page_with_status_200(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("html_200")
    out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, ProtocolError)
    assert "HTML page instead of JSON: is the base URL right?" in out.error.message
    assert "<" not in out.error.message


async def test_closing_the_stream_closes_the_upstream(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply(chunks=["word "] * 200, delay=0.05)
    events = adapter(kind).stream(ask(model), creds)
    first = await anext(aiter(events))
    assert isinstance(first, TextDelta)
    await events.aclose()  # type: ignore[attr-defined]
    assert await fake.closed(2)


async def test_cancelling_the_task_closes_the_upstream(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.reply(chunks=["word "] * 200, delay=0.05)
    got: list[str] = []

    async def consume() -> None:
        async for event in adapter(kind).stream(ask(model), creds):
            if isinstance(event, TextDelta):
                got.append(event.text)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await fake.closed(2)
    assert len(got) < 200


# --- a hostile upstream: each ends the reply in words, keeping what arrived ------------


async def test_a_16_mb_line_ends_the_reply_at_the_line_cap(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("huge_line", "one two three four five six")
    async with asyncio.timeout(10):
        out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, TooLarge)
    assert out.error.message.startswith(f"{registry.spec(kind).label} sent a line longer")
    assert "longer than 1 MB" in out.error.message
    assert "the reply was stopped there and what arrived is kept" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert await fake.closed(2)  # hung up on, not read to its end


async def test_a_16_mb_event_ends_the_reply_at_the_event_cap(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("huge_event", "one two three four five six")
    async with asyncio.timeout(10):
        out = await collect(adapter(kind).stream(ask(model), creds))
    assert isinstance(out.error, TooLarge)
    assert "sent one event longer than 1 MB" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert await fake.closed(2)


async def test_a_drip_fed_reply_ends_at_the_turn_deadline(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    # A byte every 0.1 s never trips the 0.5 s idle timeout; the deadline ends it.
    fake.scenario("drip", "one two three four five six", drip_every=0.1)
    options = dataclasses.replace(FAST, turn_deadline=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await collect(registry.create(kind, options).stream(ask(model), creds))
    assert isinstance(out.error, TimedOut)
    assert "took longer than 1 s, the most one reply may take" in out.error.message
    assert out.text and "one two three four five six".startswith(out.text)
    assert 1.0 <= loop.time() - started < 3.0
    assert await fake.closed(2)


async def test_an_endless_reply_stops_at_the_reply_cap(
    fake: FakeServer, kind: str, creds: Credentials, model: str
) -> None:
    fake.scenario("endless", "over and over ")
    options = dataclasses.replace(FAST, max_reply_chars=500)
    async with asyncio.timeout(10):
        out = await collect(registry.create(kind, options).stream(ask(model), creds))
    assert isinstance(out.error, TooLarge)
    assert "The reply grew past 500 characters" in out.error.message
    assert out.text == ("over and over " * 40)[:500]  # exactly the cap, cut mid-piece
    assert await fake.closed(2)


async def test_list_models(fake: FakeServer, kind: str, creds: Credentials) -> None:
    fake.models = ["model-a", "model-b"]
    assert await adapter(kind).list_models(creds) == ["model-a", "model-b"]


async def test_ping_ok(fake: FakeServer, kind: str, creds: Credentials) -> None:
    fake.models = ["model-a", "model-b", "model-c"]
    ping = await adapter(kind).ping(creds)
    assert ping.ok
    assert ping.models == 3
    assert ping.latency_ms > 0
    assert ping.detail == "3 models available"
    assert ping.error is None


async def test_ping_with_a_wrong_key(fake: FakeServer, kind: str, creds: Credentials) -> None:
    wrong = Credentials("sk-nope-nope-nope", creds.base_url, creds.api_version)
    ping = await adapter(kind).ping(wrong)
    assert not ping.ok
    assert ping.error is not None and ping.error["code"] == "provider_auth"
    assert "rejected the API key" in ping.detail


async def test_ping_an_unreachable_server(kind: str, creds: Credentials) -> None:
    # A port nothing listens on: refused at once, said in words.
    dead = Credentials(creds.api_key, "http://127.0.0.1:9/v1", creds.api_version)
    ping = await adapter(kind).ping(dead)
    assert not ping.ok
    assert ping.error is not None and ping.error["code"] == "provider_unavailable"
    assert "Could not connect to" in ping.detail and "is the base URL right" in ping.detail


__all__ = [name for name in dir() if name.startswith("test_")]
