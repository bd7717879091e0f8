"""The OpenAI adapter, for every OpenAI-compatible kind, against the fake OpenAI server."""

from __future__ import annotations

import asyncio

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
)
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.conftest import FAST, collect
from tests.providers.scenarios import *  # noqa: F403  (the shared scenarios, run per kind)

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


# The fixtures the shared scenarios take (tests/providers/scenarios.py).
@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


@pytest.fixture(name="creds")
def creds_for_kind(fake_openai: FakeOpenAI, kind: str) -> Credentials:
    return creds(fake_openai, kind)


@pytest.fixture
def model() -> str:
    return "gpt-4o"


# --- the normal stream ------------------------------------------------------------


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


# --- failures only this adapter shows ---------------------------------------------


async def test_retry_after_longer_than_the_budget_is_not_waited(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, retry_after=60)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, RateLimited)
    assert "try again in 60 s" in out.error.message
    assert len(fake_openai.chat_requests) == 1


async def test_503_without_retry_after_backs_off_then_succeeds(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(503).reply("recovered")
    started = asyncio.get_running_loop().time()
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert out.text == "recovered"
    assert asyncio.get_running_loop().time() - started >= 0.2  # a pause, not a hammering


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


async def test_an_error_body_with_status_200(fake_openai: FakeOpenAI) -> None:
    # Some local servers answer a stream request with a JSON error and status 200.
    body = {"error": {"message": "model 'llama9' not found", "type": "invalid_request_error"}}
    fake_openai.fail(200, body=body)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, BadRequest)
    assert "model 'llama9' not found" in out.error.message


async def test_a_base_url_without_v1_gets_a_hint_on_404(fake_openai: FakeOpenAI) -> None:
    fake_openai.require_key = False
    c = creds(fake_openai, api_key="", base_url=fake_openai.origin)  # "/v1" forgotten
    out = await collect(provider("ollama").stream(ask(), c))
    assert isinstance(out.error, BadRequest)
    assert "usually end in /v1" in out.error.message


async def test_out_of_quota_is_not_retried_and_says_billing(fake_openai: FakeOpenAI) -> None:
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    fake_openai.fail(429, body=body)
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, BadRequest)
    assert "billing" in out.error.message
    assert len(fake_openai.chat_requests) == 1


async def test_ping_an_html_page(fake_openai: FakeOpenAI) -> None:
    ping = await provider().ping(creds(fake_openai, base_url=fake_openai.origin + "/nowhere"))
    assert not ping.ok
    assert ping.error is not None
