"""The Anthropic adapter against the fake Messages API."""

from __future__ import annotations

import pytest

from llm.providers import registry
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ChatRequest,
    ContextTooLong,
    Credentials,
    Provider,
    RateLimited,
    Unavailable,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.providers.conftest import FAST, collect
from tests.providers.scenarios import *  # noqa: F403  (the shared scenarios)
from tests.providers.scenarios import ask


@pytest.fixture
def kind() -> str:
    return "anthropic"


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    return fake_anthropic


@pytest.fixture
def creds(fake_anthropic: FakeAnthropic) -> Credentials:
    return fake_anthropic.credentials()


@pytest.fixture
def model() -> str:
    return "claude-sonnet-4-5"


def claude() -> Provider:
    return registry.create("anthropic", FAST)


async def test_sends_the_documented_request(fake_anthropic: FakeAnthropic) -> None:
    request = ChatRequest(
        model="claude-sonnet-4-5",
        messages=(
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me a joke"),
        ),
        system="Be brief.",
        temperature=0.3,
        max_tokens=200,
    )
    out = await collect(claude().stream(request, fake_anthropic.credentials()))
    assert out.error is None
    sent = fake_anthropic.chat_requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == fake_anthropic.api_key
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "stream": True,
        "system": "Be brief.",
        "temperature": 0.3,
    }


async def test_max_tokens_has_a_default_and_temperature_is_clamped(
    fake_anthropic: FakeAnthropic,
) -> None:
    request = ChatRequest(
        model="claude-sonnet-4-5", messages=(ChatMessage("user", "Hi"),), temperature=1.7
    )
    out = await collect(claude().stream(request, fake_anthropic.credentials()))
    assert out.error is None
    sent = fake_anthropic.chat_requests[0].json
    assert sent["max_tokens"] == 4096
    assert sent["temperature"] == 1.0  # Anthropic's range ends at 1
    assert "system" not in sent


async def test_a_base_url_with_v1_still_works(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply("fine")
    c = fake_anthropic.credentials(base_url=fake_anthropic.base_url + "/v1/")
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), c))
    assert out.text == "fine"
    assert fake_anthropic.chat_requests[0].path == "/v1/messages"


async def test_no_key_is_refused_before_calling(fake_anthropic: FakeAnthropic) -> None:
    c = fake_anthropic.credentials(api_key="")
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), c))
    assert isinstance(out.error, AuthFailed)
    assert "No API key is set for Anthropic" in out.error.message
    assert fake_anthropic.requests == []


async def test_overloaded_error_event_before_any_text_is_retried(
    fake_anthropic: FakeAnthropic,
) -> None:
    # An overloaded_error in the stream before the first token is as passing as a 529.
    fake_anthropic.reply(chunks=[""], end="error").reply("second try")
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), fake_anthropic.credentials()))
    assert out.text == "second try"
    assert len(fake_anthropic.chat_requests) == 2


async def test_overloaded_error_event_after_text_keeps_it(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.scenario("error_midstream", "half of a reply")
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), fake_anthropic.credentials()))
    assert isinstance(out.error, Unavailable)
    assert "Anthropic is overloaded right now" in out.error.message
    assert out.text and "half of a reply".startswith(out.text)


async def test_rate_limit_says_when(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(429, retry_after=30)
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), fake_anthropic.credentials()))
    assert isinstance(out.error, RateLimited)
    assert out.error.retry_after == 30
    assert out.error.as_dict()["retry_after"] == 30
    assert "try again in 30 s" in out.error.message


async def test_prompt_too_long(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(
        400,
        body={
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 215000 tokens > 200000 maximum",
            },
        },
    )
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), fake_anthropic.credentials()))
    assert isinstance(out.error, ContextTooLong)


async def test_cache_tokens_count_as_input(fake_anthropic: FakeAnthropic) -> None:
    # Streams that use prompt caching report the cached part separately.
    fake_anthropic.reply("cached", usage=(10, 3))
    out = await collect(claude().stream(ask("claude-sonnet-4-5"), fake_anthropic.credentials()))
    assert out.usage is not None and out.usage.input_tokens == 10


# --- thinking and sampling settings -----------------------------------------------


def hi(**settings: object) -> ChatRequest:
    return ChatRequest(model="claude-sonnet-4-5", messages=(ChatMessage("user", "Hi"),), **settings)  # type: ignore[arg-type]


async def test_thinking_blocks_arrive_as_thinking_never_as_text(
    fake_anthropic: FakeAnthropic,
) -> None:
    # A thinking block (with its signature_delta), a redacted one, then the text block.
    fake_anthropic.reply("It is 4.", thinking="Two plus two: add them.", redacted_thinking=True)
    out = await collect(claude().stream(hi(thinking="show"), fake_anthropic.credentials()))
    assert out.error is None
    assert out.thinking == "Two plus two: add them."
    assert len(out.thinking_deltas) > 1
    assert out.text == "It is 4."
    assert out.done is not None and out.done.finish_reason == "stop"


async def test_top_p_and_stop_sequences_are_sent(fake_anthropic: FakeAnthropic) -> None:
    await collect(claude().stream(hi(top_p=0.9, stop=("END",)), fake_anthropic.credentials()))
    sent = fake_anthropic.chat_requests[0].json
    assert (sent["top_p"], sent["stop_sequences"]) == (0.9, ["END"])


async def test_top_p_and_stop_sequences_are_omitted_when_unset(
    fake_anthropic: FakeAnthropic,
) -> None:
    await collect(claude().stream(hi(), fake_anthropic.credentials()))
    assert not {"top_p", "stop_sequences", "thinking"} & fake_anthropic.chat_requests[0].json.keys()


@pytest.mark.parametrize("max_tokens", [None, 1, 200, 1024, 1025, 2048, 2049, 5000, 64000])
async def test_show_thinking_enables_it_with_a_budget_the_api_accepts(
    fake_anthropic: FakeAnthropic, max_tokens: int | None
) -> None:
    request = hi(thinking="show", max_tokens=max_tokens, temperature=0.5, top_p=0.9)
    out = await collect(claude().stream(request, fake_anthropic.credentials()))
    assert out.error is None
    sent = fake_anthropic.chat_requests[0].json
    budget = sent["thinking"]["budget_tokens"]
    assert sent["thinking"]["type"] == "enabled"
    assert 1024 <= budget < sent["max_tokens"]
    assert sent["max_tokens"] >= (max_tokens or 4096)  # never less room than asked for
    # The API refuses sampling settings alongside thinking.
    assert not {"temperature", "top_p"} & sent.keys()


@pytest.mark.parametrize("mode", ["auto", "skip"])
async def test_auto_and_skip_leave_thinking_off(fake_anthropic: FakeAnthropic, mode: str) -> None:
    await collect(claude().stream(hi(thinking=mode, temperature=0.5), fake_anthropic.credentials()))
    sent = fake_anthropic.chat_requests[0].json
    assert "thinking" not in sent
    assert sent["temperature"] == 0.5


async def test_keep_alive_is_refused_without_a_call(fake_anthropic: FakeAnthropic) -> None:
    ping = await claude().keep_alive(fake_anthropic.credentials(), "claude-sonnet-4-5", 30)
    assert not ping.ok
    assert "Keep-alive is for local servers" in ping.detail
    assert fake_anthropic.requests == []
