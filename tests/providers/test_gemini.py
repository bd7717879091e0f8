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
