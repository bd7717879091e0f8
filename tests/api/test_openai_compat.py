"""/v1 with the official `openai` package as the client, against Coppertone served by uvicorn."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from django.core.cache import cache
from django.db import OperationalError

from accounts.models import ApiToken, User
from llm.models import Conversation, Message
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI
from tests.live import serving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def coppertone_url(transactional_db: None, settings: Any) -> Iterator[str]:
    """The whole ASGI app on a real socket (the test database is shared in-process)."""
    cache.clear()
    settings.LLM_MAX_RETRIES = 0
    with serving() as url:
        yield f"{url}/v1"


@pytest.fixture
def sdk(alice: User, fake_openai: FakeOpenAI, coppertone_url: str) -> openai.OpenAI:
    configure(alice, fake_openai)
    _, raw = ApiToken.issue(alice, "sdk")
    return openai.OpenAI(api_key=raw, base_url=coppertone_url, max_retries=0, timeout=20)


def test_non_streaming_completion_is_a_recorded_turn(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Paris.", usage=(21, 2))
    completion = sdk.chat.completions.create(
        model="openai/gpt-4o",
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Which France?"},
            {"role": "user", "content": "The country."},
        ],
        temperature=0.2,
    )

    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "openai/gpt-4o"
    assert completion.usage is not None and completion.usage.total_tokens == 23
    # The request's messages were forwarded as the conversation.
    sent = fake_openai.chat_requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "Answer in one word."
    assert sent["temperature"] == 0.2
    # ...and recorded as a turn in a new conversation.
    reply = Message.objects.get(role="assistant")
    assert (reply.content, reply.status, reply.provider) == ("Paris.", "complete", "openai")
    assert Conversation.objects.get().title == "The country."


def test_streaming_completion_yields_chunks_and_usage(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(chunks=["Hel", "lo ", "wörld"], usage=(5, 3))
    stream = sdk.chat.completions.create(
        model="gpt-4o",  # a bare name: the prefix picks OpenAI
        messages=[{"role": "user", "content": "Greet"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello wörld"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert Message.objects.get(role="assistant").content == "Hello wörld"


def test_models_lists_the_configured_providers(sdk: openai.OpenAI) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert "openai/gpt-4o" in ids and any(i.startswith("local/") for i in ids)


def test_errors_have_openais_shape(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, coppertone_url: str
) -> None:
    stranger = openai.OpenAI(api_key="cpt_not-a-token", base_url=coppertone_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        stranger.models.list()
    assert "not a valid Coppertone token" in unauthenticated.value.message

    with pytest.raises(openai.BadRequestError) as unconfigured:
        sdk.chat.completions.create(
            model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert unconfigured.value.code == "model_not_configured"
    assert unconfigured.value.response.headers["x-should-retry"] == "false"

    fake_openai.fail(401)
    with pytest.raises(openai.APIStatusError) as upstream:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert upstream.value.status_code == 502 and upstream.value.code == "provider_auth"
    assert Message.objects.filter(role="user", content="hi").exists()


def test_error_mid_stream_raises_in_the_sdk(sdk: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.scenario("error_midstream", text="abcdefgh")
    stream = sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Go"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "abcd"
    assert Message.objects.get(role="assistant").status == "error"


def test_closing_a_stream_stops_the_turn_and_keeps_the_text(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(chunks=[f"w{i} " for i in range(200)], delay=0.05)
    stream = sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if received.count(" ") >= 3:
            break
    stream.close()  # the client goes away mid-reply

    assert fake_openai.wait_closed(3.0), "the upstream request was not closed"
    deadline = time.monotonic() + 5
    reply = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OperationalError):  # the test database's table locks
            reply = Message.objects.get(role="assistant")
            if reply.status != "streaming":
                break
        time.sleep(0.2)
    assert reply is not None and reply.status == "stopped"
    assert reply.content.startswith(received) and len(reply.content) < len("w000 ") * 200


def test_v1_refuses_a_host_not_in_allowed_hosts(coppertone_url: str) -> None:
    # /v1/ skips the middleware stack, so it checks ALLOWED_HOSTS itself.
    parts = urlsplit(coppertone_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", "/v1/models", headers={"Host": "evil.example"})
    assert connection.getresponse().status == 400


def test_sse_chat_client_leaving_lets_the_reply_finish(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, coppertone_url: str
) -> None:
    # Unlike /v1, a reply asked for on /api/v1/chat outlives the request.
    words = [f"w{i} " for i in range(30)]
    fake_openai.reply(chunks=words, delay=0.03)
    parts = urlsplit(coppertone_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request(
        "POST",
        "/api/v1/chat",
        body=json.dumps({"message": "Count", "provider": "openai", "stream": True}),
        headers={"Authorization": f"Bearer {sdk.api_key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200
    deltas = 0
    while deltas < 3:
        if response.readline().startswith(b"event: delta"):
            deltas += 1
    connection.close()  # the browser tab goes away

    deadline = time.monotonic() + 10
    reply = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OperationalError):
            reply = Message.objects.get(role="assistant")
            if reply.status != "streaming":
                break
        time.sleep(0.2)
    assert reply is not None and reply.status == "complete"
    assert reply.content == "".join(words)
