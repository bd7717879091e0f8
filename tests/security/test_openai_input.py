"""Hole 10 (/v1): every field type-checked, numbers finite and in range, the whole
conversation length-capped, each refusal an OpenAI-shaped 400 before any upstream call."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import AsyncClient

from accounts.models import ApiToken, User
from llm.models import Message
from tests.engine.conftest import configure
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def auth(alice: User, fake_openai: FakeOpenAI, settings: Any) -> dict[str, str]:
    cache.clear()
    settings.LLM_MAX_CONVERSATION_CHARS = 1000
    configure(alice, fake_openai)
    return {"Authorization": f"Bearer {ApiToken.issue(alice, 'sdk')[1]}"}


async def post(auth: dict[str, str], raw: str) -> Any:
    return await AsyncClient().post(
        "/v1/chat/completions", raw, content_type="application/json", headers=auth
    )


def body(**fields: Any) -> str:
    import json

    return json.dumps({"model": "openai/gpt-4o", "messages": HELLO, **fields})


BAD = {
    "infinite max_tokens": '{"model": "openai/gpt-4o", "messages": [{"role": "user", '
    '"content": "Hi"}], "max_tokens": Infinity}',
    "NaN temperature": '{"model": "openai/gpt-4o", "messages": [{"role": "user", '
    '"content": "Hi"}], "temperature": NaN}',
    "overflowing max_tokens": body(max_tokens=1e999),
    "temperature 9": body(temperature=9),
    "negative temperature": body(temperature=-0.1),
    "max_tokens 0": body(max_tokens=0),
    "half a token": body(max_tokens=10.5),
    "too many tokens": body(max_tokens=10**9),
    "text temperature": body(temperature="hot"),
    "n 50": body(n=50),
    "a bad role": body(messages=[{"role": "wizard", "content": "Hi"}]),
    "content of the wrong type": body(messages=[{"role": "user", "content": 5}]),
    "a model that is a list": body(model=["openai/gpt-4o"]),
    "a NUL in the system prompt": body(
        messages=[{"role": "system", "content": "a\x00b"}, {"role": "user", "content": "Hi"}]
    ),
    "an overlong history": body(
        messages=[
            {"role": "system", "content": "s" * 600},
            {"role": "assistant", "content": "a" * 600},
            {"role": "user", "content": "Hi"},
        ]
    ),
}


@pytest.mark.parametrize("case", BAD)
async def test_bad_input_is_an_openai_shaped_400_before_any_upstream_call(
    auth: dict[str, str], fake_openai: FakeOpenAI, case: str
) -> None:
    response = await post(auth, BAD[case])
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert response["x-should-retry"] == "false"
    assert fake_openai.chat_requests == []
    assert await Message.objects.acount() == 0


async def test_the_limits_still_let_a_normal_request_through(
    auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Hi there.")
    response = await post(auth, body(temperature=0.2, max_tokens=100.0))
    assert response.status_code == 200
    assert fake_openai.chat_requests[-1].json["max_tokens"] == 100
