"""The OpenAI adapter, for every OpenAI-compatible kind, against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import dataclasses

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
    TooLarge,
    Unavailable,
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


# --- thinking ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "think_tags"])
async def test_each_reasoning_shape_arrives_as_thinking_never_as_text(
    fake_openai: FakeOpenAI, field: str
) -> None:
    fake_openai.reply("It is 4.", thinking="Two plus two: add them.", thinking_field=field)
    out = await collect(provider("vllm").stream(ask(model="deepseek-r1"), creds(fake_openai)))
    assert out.error is None
    assert out.thinking == "Two plus two: add them."
    assert out.text == "It is 4."
    assert len(out.thinking_deltas) > 1  # streamed as it came
    assert not any("think" in d or "add" in d for d in out.deltas)
    assert out.done is not None and out.done.finish_reason == "stop"


async def test_a_think_tag_later_in_the_reply_is_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("Wrap it in <think></think> tags.")
    out = await collect(provider().stream(ask(), creds(fake_openai)))
    assert (out.thinking, out.text) == ("", "Wrap it in <think></think> tags.")


async def test_a_reply_that_ends_inside_a_think_block_keeps_it_as_thinking(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.reply(chunks=["<thi", "nk>\nstill ", "working</th"], finish_reason="length")
    out = await collect(provider("llamacpp").stream(ask(), creds(fake_openai)))
    assert (out.thinking, out.text) == ("still working</th", "")
    assert out.done is not None and out.done.finish_reason == "length"


async def test_a_drop_after_thinking_began_is_not_retried(fake_openai: FakeOpenAI) -> None:
    # The person has seen the thinking: a second attempt would show it twice.
    fake_openai.reply("answer", thinking="a long line of thought", end="drop")
    out = await collect(provider("vllm").stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, Unavailable)
    assert out.thinking and "a long line of thought".startswith(out.thinking)
    assert len(fake_openai.chat_requests) == 1


async def test_the_reply_cap_counts_thinking(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("answer", thinking="x" * 400)
    capped = registry.create("vllm", dataclasses.replace(FAST, max_reply_chars=100))
    out = await collect(capped.stream(ask(), creds(fake_openai)))
    assert isinstance(out.error, TooLarge)
    assert (len(out.thinking), out.text) == (100, "")


# What each kind sends for thinking "show" and "skip" (auto sends nothing).
SWITCHES: dict[str, dict[str, dict[str, object]]] = {
    "qwen": {"show": {"enable_thinking": True}, "skip": {"enable_thinking": False}},
    "ollama": {"show": {}, "skip": {"reasoning_effort": "none"}},
    **{
        kind: {
            "show": {"chat_template_kwargs": {"enable_thinking": True}},
            "skip": {"chat_template_kwargs": {"enable_thinking": False}},
        }
        for kind in ("lmstudio", "llamacpp", "vllm", "openai_compatible")
    },
}
THINKING_KEYS = {"enable_thinking", "chat_template_kwargs", "reasoning_effort"}


@pytest.mark.parametrize("mode", ["auto", "show", "skip"])
async def test_thinking_show_and_skip_in_each_servers_own_words(
    fake_openai: FakeOpenAI, kind: str, mode: str
) -> None:
    fake_openai.require_key = False
    request = ask(model="qwen3-8b", thinking=mode)
    out = await collect(provider(kind).stream(request, creds(fake_openai, kind)))
    assert out.error is None
    sent = fake_openai.chat_requests[0].json
    expected = SWITCHES.get(kind, {}).get(mode, {})
    assert {k: sent[k] for k in THINKING_KEYS & sent.keys()} == expected


# --- sampling settings ------------------------------------------------------------


async def test_top_p_and_stop_are_sent(fake_openai: FakeOpenAI, kind: str) -> None:
    request = ask(temperature=0.4, top_p=0.9, stop=("END", "\n\n"))
    await collect(provider(kind).stream(request, creds(fake_openai, kind)))
    sent = fake_openai.chat_requests[0].json
    assert (sent["temperature"], sent["top_p"], sent["stop"]) == (0.4, 0.9, ["END", "\n\n"])


async def test_top_p_and_stop_are_omitted_when_unset(fake_openai: FakeOpenAI) -> None:
    await collect(provider().stream(ask(), creds(fake_openai)))
    sent = fake_openai.chat_requests[0].json
    assert not {"top_p", "stop", "temperature"} & sent.keys()


@pytest.mark.parametrize(
    "model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "GPT-5-nano"]
)
async def test_reasoning_models_get_no_sampling_and_max_completion_tokens_on_any_host(
    fake_openai: FakeOpenAI, model: str
) -> None:
    # 127.0.0.1 is not openai.com: a proxy or a compatible gateway serving OpenAI's models.
    request = ask(model=model, temperature=0.3, top_p=0.5, max_tokens=100)
    out = await collect(provider("openai_compatible").stream(request, creds(fake_openai)))
    assert out.error is None
    sent = fake_openai.chat_requests[0].json
    assert sent["max_completion_tokens"] == 100
    assert not {"max_tokens", "temperature", "top_p"} & sent.keys()


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-5-chat-latest", "o-llama"])
async def test_other_models_keep_temperature_and_max_tokens(
    fake_openai: FakeOpenAI, model: str
) -> None:
    request = ask(model=model, temperature=0.3, top_p=0.5, max_tokens=100)
    await collect(provider("openai_compatible").stream(request, creds(fake_openai)))
    sent = fake_openai.chat_requests[0].json
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.5, 100)


@pytest.mark.parametrize(
    ("model", "effort"),
    [
        ("o3-mini", "low"),
        ("o1", "low"),
        ("gpt-5", "minimal"),
        ("gpt-5.1", "none"),
        ("gpt-5-pro", None),
    ],
)
@pytest.mark.parametrize("mode", ["auto", "show", "skip"])
async def test_reasoning_models_skip_thinking_with_their_least_effort(
    fake_openai: FakeOpenAI, model: str, effort: str | None, mode: str
) -> None:
    await collect(provider().stream(ask(model=model, thinking=mode), creds(fake_openai)))
    sent = fake_openai.chat_requests[0].json
    assert sent.get("reasoning_effort") == (effort if mode == "skip" else None)


# --- keep-alive -------------------------------------------------------------------


async def test_ollama_keep_alive_is_its_load_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.require_key = False
    ping = await provider("ollama").keep_alive(creds(fake_openai, api_key=""), "llama3.2", 30)
    assert ping.ok, ping.detail
    assert "llama3.2" in ping.detail
    (sent,) = fake_openai.keep_alive_requests
    assert sent.path == "/api/generate"  # the host root, not the /v1 base URL
    assert sent.json == {"model": "llama3.2", "keep_alive": "30m", "stream": False}
    assert "prompt" not in sent.json  # a load, not a generation
    assert fake_openai.requests == [sent]


@pytest.mark.parametrize("kind", ["lmstudio", "llamacpp", "vllm", "openai_compatible"])
async def test_one_token_keep_alive_asks_for_one_token(fake_openai: FakeOpenAI, kind: str) -> None:
    fake_openai.require_key = False
    ping = await provider(kind).keep_alive(creds(fake_openai, api_key=""), "qwen3-8b", 10)
    assert ping.ok, ping.detail
    (sent,) = fake_openai.keep_alive_requests
    assert sent.path == "/v1/chat/completions"
    assert (sent.json["model"], sent.json["max_tokens"]) == ("qwen3-8b", 1)


async def test_keep_alive_without_a_model_loads_the_default(fake_openai: FakeOpenAI) -> None:
    fake_openai.require_key = False
    await provider("ollama").keep_alive(creds(fake_openai, api_key=""), "", 5)
    assert fake_openai.keep_alive_requests[0].json["model"] == "llama3.2"


async def test_keep_alive_goes_through_the_url_guard(fake_openai: FakeOpenAI) -> None:
    unguarded = registry.create("ollama", dataclasses.replace(FAST, private_hosts=()))
    ping = await unguarded.keep_alive(creds(fake_openai, api_key=""), "llama3.2", 30)
    assert not ping.ok
    assert ping.error is not None and "will not connect" in str(ping.error["message"])
    assert fake_openai.requests == []


async def test_keep_alive_reports_a_wrong_key(fake_openai: FakeOpenAI) -> None:
    c = creds(fake_openai, api_key="sk-wrong-key-abcdefghijklmnop")
    ping = await provider("ollama").keep_alive(c, "llama3.2", 30)
    assert not ping.ok
    assert ping.error is not None and ping.error["code"] == "provider_auth"
    assert "abcdefghijklmnop" not in ping.detail


@pytest.mark.parametrize("kind", ["openai", "qwen", "huggingface", "azure_openai"])
async def test_keep_alive_for_a_hosted_kind_is_refused_without_a_call(
    fake_openai: FakeOpenAI, kind: str
) -> None:
    ping = await provider(kind).keep_alive(creds(fake_openai, kind), "gpt-4o", 30)
    assert not ping.ok
    assert "Keep-alive is for local servers" in ping.detail
    assert ping.error is not None and ping.error["code"] == "provider_error"
    assert fake_openai.requests == []
