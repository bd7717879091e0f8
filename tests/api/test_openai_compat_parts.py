"""/v1/chat/completions with OpenAI content parts: text and image_url with data URLs,
sniffed and limited by llm/attachments.py like an upload; web URLs are never fetched."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.models import User
from tests.attachment_bytes import IMAGES, png
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]


def data_url(data: bytes, claimed: str = "image/png") -> str:
    return f"data:{claimed};base64,{base64.b64encode(data).decode()}"


async def complete(auth: dict[str, str], content: Any, model: str = "openai/gpt-4o") -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return await AsyncClient().post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json", headers=auth
    )


def parts(text: str, url: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


async def test_text_and_image_parts_reach_openai_with_the_sniffed_type(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("A GIF.")
    # It says PNG; its bytes are a GIF: the bytes win.
    response = await complete(alice_auth, parts("What is it?", data_url(IMAGES["image/gif"])))

    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "A GIF."
    assert fake_openai.chat_requests[-1].json["messages"][-1]["content"] == parts(
        "What is it?", data_url(IMAGES["image/gif"], "image/gif")
    )


async def test_image_parts_reach_anthropic_as_image_blocks(
    alice: User, alice_auth: dict[str, str], fake_anthropic: FakeAnthropic
) -> None:
    await sync_to_async(configure)(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    image = base64.b64encode(png()).decode()

    response = await complete(
        alice_auth, parts("Describe", data_url(png())), model="anthropic/claude-sonnet-4-5"
    )

    assert response.status_code == 200, response.content
    assert fake_anthropic.chat_requests[-1].json["messages"][-1]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
        {"type": "text", "text": "Describe"},
    ]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://example.com/cat.png", "the hub does not fetch image URLs"),
        ("data:image/png,rawbytes", "the data URL must be base64"),
        ("data:image/png;base64,not*base64", "is not valid base64"),
        (data_url(b"just some text pretending"), "that data is not a PNG, JPEG, WebP or GIF"),
    ],
)
async def test_what_cannot_be_an_image_is_refused_in_openais_shape(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, url: str, words: str
) -> None:
    response = await complete(alice_auth, parts("Look", url))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("messages[0].content[1]: ")
    assert words in error["message"]
    assert not fake_openai.chat_requests


async def test_the_limits_of_an_upload_hold_for_inline_images(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_FILE_BYTES = 1000
    too_big = await complete(alice_auth, parts("Look", data_url(png() + b"\x00" * 2000)))
    settings.LLM_MAX_FILES_PER_MESSAGE = 1
    image = {"type": "image_url", "image_url": {"url": data_url(png())}}
    too_many = await complete(alice_auth, [{"type": "text", "text": "Look"}, image, image])

    assert too_big.status_code == 400
    assert too_big.json()["error"]["message"].startswith("That file is 2.1 kB; the limit is 1 kB.")
    assert too_many.status_code == 400
    assert too_many.json()["error"]["message"].startswith(
        "That message has 2 files; the limit is 1 a message."
    )
    assert not fake_openai.chat_requests


async def test_an_image_for_a_model_without_vision_is_refused(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    response = await complete(alice_auth, parts("Look", data_url(png())), "openai/gpt-3.5-turbo")

    assert response.status_code == 400
    assert "gpt-3.5-turbo (OpenAI) cannot read images" in response.json()["error"]["message"]
    assert not fake_openai.chat_requests


async def test_a_body_past_the_form_cap_is_read_when_its_images_fit(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000  # smaller than this request
    big = png(40, 40) + b"\x00" * 3000  # a PNG with trailing bytes, still a PNG
    fake_openai.reply("Seen.")

    response = await complete(alice_auth, parts("Look", data_url(big)))

    assert response.status_code == 200, response.content
    sent = fake_openai.chat_requests[-1].json["messages"][-1]["content"][1]
    assert sent["image_url"]["url"] == data_url(big)
