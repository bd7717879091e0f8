"""The Gemini adapter against the fake Generative Language API."""

from __future__ import annotations

import pytest

from llm.providers import registry
from llm.providers.base import (
    AuthFailed,
    ChatMessage,
    ChatRequest,
    Credentials,
    Provider,
    RateLimited,
)
from tests.fakes.gemini_server import FakeGemini
from tests.providers.conftest import FAST, collect
from tests.providers.scenarios import *  # noqa: F403  (the shared scenarios)
from tests.providers.scenarios import ask


@pytest.fixture
def kind() -> str:
    return "gemini"


@pytest.fixture
def fake(fake_gemini: FakeGemini) -> FakeGemini:
    return fake_gemini


@pytest.fixture
def creds(fake_gemini: FakeGemini) -> Credentials:
    return fake_gemini.credentials()


@pytest.fixture
def model() -> str:
    return "gemini-2.0-flash"


def gemini() -> Provider:
    return registry.create("gemini", FAST)


async def test_sends_the_documented_request(fake_gemini: FakeGemini) -> None:
    request = ChatRequest(
        model="gemini-2.0-flash",
        messages=(
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me a joke"),
        ),
        system="Be brief.",
        temperature=0.3,
        max_tokens=200,
    )
    out = await collect(gemini().stream(request, fake_gemini.credentials()))
    assert out.error is None
    sent = fake_gemini.chat_requests[0]
    assert sent.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}  # and never the key
    assert sent.headers["x-goog-api-key"] == fake_gemini.api_key
    assert sent.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Tell me a joke"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 200},
    }


async def test_the_key_never_appears_in_any_url(fake_gemini: FakeGemini) -> None:
    c = fake_gemini.credentials()
    await collect(gemini().stream(ask("gemini-2.0-flash"), c))
    await gemini().list_models(c)
    await gemini().ping(c)
    assert len(fake_gemini.requests) == 3
    assert all(c.api_key not in r.url for r in fake_gemini.requests)


async def test_a_wrong_key_as_google_answers_it(fake_gemini: FakeGemini) -> None:
    # Google answers a wrong key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
    c = fake_gemini.credentials(api_key="AIzaWrongWrongWrongWrongWrong")
    out = await collect(gemini().stream(ask("gemini-2.0-flash"), c))
    assert isinstance(out.error, AuthFailed)
    assert "Google Gemini rejected the API key" in out.error.message
    assert "AIzaWrong" not in out.error.message


async def test_rate_limit_wait_comes_from_retry_info(fake_gemini: FakeGemini) -> None:
    fake_gemini.fail(429, retry_after=37)
    out = await collect(gemini().stream(ask("gemini-2.0-flash"), fake_gemini.credentials()))
    assert isinstance(out.error, RateLimited)
    assert out.error.retry_after == 37
    assert "try again in 37 s" in out.error.message


async def test_models_list_strips_the_prefix_and_skips_embedding_models(
    fake_gemini: FakeGemini,
) -> None:
    fake_gemini.models = ["gemini-2.0-flash", "gemini-2.5-pro", "text-embedding-004"]
    assert await gemini().list_models(fake_gemini.credentials()) == [
        "gemini-2.0-flash",
        "gemini-2.5-pro",
    ]


async def test_a_models_prefixed_name_is_accepted(fake_gemini: FakeGemini) -> None:
    fake_gemini.reply("ok")
    c = fake_gemini.credentials()
    out = await collect(gemini().stream(ask("models/gemini-2.0-flash"), c))
    assert out.text == "ok"
    assert fake_gemini.chat_requests[0].path.endswith(
        "/models/gemini-2.0-flash:streamGenerateContent"
    )


async def test_no_key_is_refused_before_calling(fake_gemini: FakeGemini) -> None:
    c = fake_gemini.credentials(api_key="")
    out = await collect(gemini().stream(ask("gemini-2.0-flash"), c))
    assert isinstance(out.error, AuthFailed)
    assert fake_gemini.requests == []


# --- thinking, sampling settings and the end of a stream --------------------------


def hi(**settings: object) -> ChatRequest:
    return ChatRequest(model="gemini-2.5-flash", messages=(ChatMessage("user", "Hi"),), **settings)  # type: ignore[arg-type]


async def test_thought_parts_arrive_as_thinking_never_as_text(fake_gemini: FakeGemini) -> None:
    fake_gemini.reply("It is 4.", thinking="Two plus two: add them.")
    out = await collect(gemini().stream(hi(thinking="show"), fake_gemini.credentials()))
    assert out.error is None
    assert out.thinking == "Two plus two: add them."
    assert len(out.thinking_deltas) > 1
    assert out.text == "It is 4."


async def test_top_p_and_stop_sequences_are_sent(fake_gemini: FakeGemini) -> None:
    await collect(gemini().stream(hi(top_p=0.9, stop=("END", "\n\n")), fake_gemini.credentials()))
    config = fake_gemini.chat_requests[0].json["generationConfig"]
    assert config == {"topP": 0.9, "stopSequences": ["END", "\n\n"]}


@pytest.mark.parametrize(
    ("mode", "config"),
    [
        ("auto", None),
        ("show", {"thinkingConfig": {"includeThoughts": True}}),
        ("skip", {"thinkingConfig": {"thinkingBudget": 0}}),
    ],
)
async def test_thinking_show_and_skip(
    fake_gemini: FakeGemini, mode: str, config: dict[str, object] | None
) -> None:
    await collect(gemini().stream(hi(thinking=mode), fake_gemini.credentials()))
    assert fake_gemini.chat_requests[0].json.get("generationConfig") == config


async def test_finish_reason_null_on_every_chunk_still_gives_the_whole_reply(
    fake_gemini: FakeGemini,
) -> None:
    # LiteLLM's Gemini endpoint: "finishReason": null until the last chunk.
    fake_gemini.scenario("finish_reason_null", "The whole reply arrives.", usage=(7, 6))
    out = await collect(gemini().stream(hi(), fake_gemini.credentials()))
    assert out.error is None
    assert out.text == "The whole reply arrives."
    assert len(out.deltas) > 1
    assert out.usage is not None and (out.usage.input_tokens, out.usage.output_tokens) == (7, 6)
    assert out.done is not None and out.done.finish_reason == "stop"


async def test_the_final_chunk_still_ends_a_stream_held_open(fake_gemini: FakeGemini) -> None:
    # A server that keeps the body open after the last chunk: the finishReason ends it.
    fake_gemini.scenario("hold_open", "Done here.", null_finish=True)
    out = await collect(gemini().stream(hi(), fake_gemini.credentials()))
    assert out.text == "Done here."
    assert out.done is not None


async def test_keep_alive_is_refused_without_a_call(fake_gemini: FakeGemini) -> None:
    ping = await gemini().keep_alive(fake_gemini.credentials(), "gemini-2.0-flash", 30)
    assert not ping.ok
    assert "Keep-alive is for local servers" in ping.detail
    assert fake_gemini.requests == []
