"""Files: POST/GET/DELETE /api/v1/files and `attachments` in chat bodies, end to end
against the fake providers, each provider's request body checked in its own format."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client

from accounts.models import User
from llm.models import Attachment, Conversation
from tests.attachment_bytes import IMAGES, pdf, png
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]

NOTES = "# Plan\n\nShip the *attachments* work on Friday.\n"
CSV = "city,people\nLyon,522000\nNantes,320000\n"


async def upload(
    auth: dict[str, str], name: str, data: bytes, content_type: str = "application/octet-stream"
) -> Any:
    sent = SimpleUploadedFile(name, data, content_type=content_type)
    return await AsyncClient().post("/api/v1/files", {"file": sent}, headers=auth)


async def uploaded(auth: dict[str, str], name: str, data: bytes) -> int:
    response = await upload(auth, name, data)
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


async def chat(auth: dict[str, str], **body: Any) -> Any:
    return await AsyncClient().post(
        "/api/v1/chat", json.dumps(body), content_type="application/json", headers=auth
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- upload, download, delete ------------------------------------------------------------


async def test_upload_answers_its_sniffed_type_whatever_the_client_claims(
    alice_auth: dict[str, str],
) -> None:
    response = await upload(alice_auth, "notes.md", NOTES.encode(), content_type="image/png")

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "name": "notes.md",
        "content_type": "text/markdown",
        "size": len(NOTES.encode()),
    }
    stored = await Attachment.objects.aget(pk=body["id"])
    assert (stored.kind, stored.text, stored.message_id) == ("text", NOTES, None)


@pytest.mark.parametrize(
    ("name", "data", "content_type", "kind"),
    [
        ("notes.txt", b"plain words", "text/plain", "text"),
        ("notes.md", NOTES.encode(), "text/markdown", "text"),
        ("cities.csv", CSV.encode(), "text/csv", "text"),
        ("main.py", b"print('hi')\n", "text/plain", "text"),
        ("report.pdf", pdf(), "application/pdf", "text"),
        *[(f"picture.{t.split('/')[1]}", data, t, "image") for t, data in IMAGES.items()],
        ("photo.png", b"not a picture at all", "text/plain", "text"),  # named .png, is text
        ("scan", png(), "image/png", "image"),  # no extension, is a PNG
    ],
)
async def test_each_kind_is_told_by_its_bytes(
    alice_auth: dict[str, str], name: str, data: bytes, content_type: str, kind: str
) -> None:
    response = await upload(alice_auth, name, data)

    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == content_type
    stored = await Attachment.objects.aget(pk=response.json()["id"])
    assert stored.kind == kind
    if name == "report.pdf":
        assert stored.text == "Quarterly revenue grew 12 percent"


async def test_binary_garbage_and_empty_files_are_refused_in_words(
    alice_auth: dict[str, str],
) -> None:
    garbage = await upload(alice_auth, "blob.png", bytes(range(256)) * 4)
    empty = await upload(alice_auth, "empty.txt", b"")

    assert garbage.status_code == 400
    assert garbage.json()["error"]["message"].startswith(
        "blob.png is not text, a PDF or a PNG, JPEG, WebP or GIF image"
    )
    assert empty.status_code == 400
    assert "empty" in empty.json()["error"]["message"]
    assert not await Attachment.objects.aexists()


async def test_a_damaged_or_textless_pdf_is_refused_in_words(alice_auth: dict[str, str]) -> None:
    damaged = await upload(alice_auth, "broken.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type")
    assert damaged.status_code == 400
    assert "could not be read as a PDF" in damaged.json()["error"]["message"]


async def test_the_owner_downloads_it_as_stored(alice_auth: dict[str, str]) -> None:
    file_id = await uploaded(alice_auth, "cities.csv", CSV.encode())

    response = await AsyncClient().get(f"/api/v1/files/{file_id}", headers=alice_auth)

    assert response.status_code == 200
    assert response.content == CSV.encode()
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="cities.csv"'


async def test_delete_removes_the_row_and_the_stored_file(alice_auth: dict[str, str]) -> None:
    file_id = await uploaded(alice_auth, "notes.md", NOTES.encode())
    stored = str((await Attachment.objects.aget(pk=file_id)).file.name)
    assert default_storage.exists(stored)

    deleted = await AsyncClient().delete(f"/api/v1/files/{file_id}", headers=alice_auth)

    assert deleted.status_code == 204
    assert not default_storage.exists(stored)
    again = await AsyncClient().get(f"/api/v1/files/{file_id}", headers=alice_auth)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


async def test_bob_gets_404_for_alices_file_on_get_delete_and_in_a_chat(
    alice_auth: dict[str, str], bob: User, bob_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    file_id = await uploaded(alice_auth, "notes.md", NOTES.encode())
    await sync_to_async(configure)(bob, fake_openai)

    got = await AsyncClient().get(f"/api/v1/files/{file_id}", headers=bob_auth)
    deleted = await AsyncClient().delete(f"/api/v1/files/{file_id}", headers=bob_auth)
    chatted = await chat(bob_auth, message="Read it", provider="openai", attachments=[file_id])

    for response in (got, deleted, chatted):
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "code": "not_found",
                "message": "That file does not exist, or it was deleted.",
            }
        }
    assert await Attachment.objects.filter(pk=file_id, message=None).aexists()
    assert not fake_openai.chat_requests  # refused before any upstream call
    assert not await Conversation.objects.filter(user=bob).aexists()


def test_a_session_upload_past_the_in_memory_cap_needs_and_passes_csrf(
    alice: User, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # the form cap; files are not held to it
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    data = ("a line of notes\n" * 400).encode()

    refused = browser.post("/api/v1/files", {"file": SimpleUploadedFile("n.txt", data)})
    accepted = browser.post(
        "/api/v1/files", {"file": SimpleUploadedFile("n.txt", data)}, headers={"X-CSRFToken": token}
    )

    assert refused.status_code == 403
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["size"] == len(data)


# --- limits ------------------------------------------------------------------------------


async def test_a_file_over_the_byte_limit_is_refused_with_both_sizes(
    alice_auth: dict[str, str], settings: Any
) -> None:
    settings.LLM_MAX_FILE_BYTES = 1000
    response = await upload(alice_auth, "big.txt", b"x" * 1500)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["message"].startswith("That file is 1.5 kB; the limit is 1 kB.")


async def test_too_many_files_in_one_message_is_refused_before_any_call(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_FILES_PER_MESSAGE = 2
    ids = [await uploaded(alice_auth, f"n{i}.txt", b"note") for i in range(3)]

    response = await chat(alice_auth, message="Read these", attachments=ids)

    assert response.status_code == 413
    assert response.json()["error"]["message"].startswith(
        "That message has 3 files; the limit is 2 a message."
    )
    assert not fake_openai.chat_requests


async def test_extracted_text_over_the_limit_is_refused_at_upload_and_at_send(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, settings: Any
) -> None:
    settings.LLM_MAX_ATTACHMENT_CHARS = 100
    alone = await upload(alice_auth, "long.txt", b"y" * 150)
    ids = [await uploaded(alice_auth, f"half{i}.txt", b"z" * 60) for i in range(2)]
    together = await chat(alice_auth, message="Read both", attachments=ids)

    assert alone.status_code == 413
    assert alone.json()["error"]["message"].startswith(
        "long.txt reads as 150 characters; the limit is 100 a message."
    )
    assert together.status_code == 413
    assert together.json()["error"]["message"].startswith(
        "The attached files read as 120 characters together; the limit is 100 a message."
    )
    assert not fake_openai.chat_requests


async def test_a_malformed_attachments_field_is_a_bad_request(alice_auth: dict[str, str]) -> None:
    response = await chat(alice_auth, message="hi", attachments="12")
    assert response.status_code == 400
    assert "attachments must be a list of file ids" in response.json()["error"]["message"]


# --- sending, in each provider's format ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "header"),
    [
        ("notes.txt", b"plain words", "Attached file notes.txt:\n```\nplain words\n```"),
        ("notes.md", NOTES.encode(), f"Attached file notes.md:\n```\n{NOTES}\n```"),
        ("cities.csv", CSV.encode(), f"Attached file cities.csv:\n```\n{CSV}\n```"),
        (
            "report.pdf",
            pdf(),
            "Attached file report.pdf (its text):\n```\nQuarterly revenue grew 12 percent\n```",
        ),
    ],
)
async def test_text_files_are_folded_into_the_message_for_openai(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, name: str, data: bytes, header: str
) -> None:
    file_id = await uploaded(alice_auth, name, data)

    response = await chat(alice_auth, message="Summarise this", attachments=[file_id])

    assert response.status_code == 200, response.content
    sent = fake_openai.chat_requests[-1].json["messages"][-1]
    assert sent == {"role": "user", "content": f"Summarise this\n\n{header}"}
    stored = await Attachment.objects.aget(pk=file_id)
    assert stored.message_id is not None  # linked to the user's message


async def test_a_fence_inside_the_file_cannot_close_its_block(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    file_id = await uploaded(alice_auth, "readme.md", b"Run:\n```sh\nmake\n```\n")
    await chat(alice_auth, message="Explain", attachments=[file_id])

    content = fake_openai.chat_requests[-1].json["messages"][-1]["content"]
    assert content.endswith("Attached file readme.md:\n````\nRun:\n```sh\nmake\n```\n\n````")


@pytest.mark.parametrize("media_type", list(IMAGES))
async def test_images_go_to_openai_as_image_url_parts(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, media_type: str
) -> None:
    data = IMAGES[media_type]
    file_id = await uploaded(alice_auth, "picture", data)

    response = await chat(alice_auth, message="What is this?", attachments=[file_id])

    assert response.status_code == 200, response.content
    assert fake_openai.chat_requests[-1].json["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{b64(data)}"}},
        ],
    }


async def test_anthropic_gets_image_blocks_then_the_text_with_the_files(
    alice: User, alice_auth: dict[str, str], fake_anthropic: FakeAnthropic
) -> None:
    await sync_to_async(configure)(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    image = await uploaded(alice_auth, "chart.gif", IMAGES["image/gif"])
    notes = await uploaded(alice_auth, "notes.md", NOTES.encode())

    response = await chat(
        alice_auth, message="Compare", provider="anthropic", attachments=[image, notes]
    )

    assert response.status_code == 200, response.content
    assert fake_anthropic.chat_requests[-1].json["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": "image/gif",
                    "data": b64(IMAGES["image/gif"]),
                },
            },
            {"type": "text", "text": f"Compare\n\nAttached file notes.md:\n```\n{NOTES}\n```"},
        ],
    }


async def test_gemini_gets_inline_data_parts_then_the_text(
    alice: User, alice_auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    await sync_to_async(configure)(alice, fake_gemini, "gemini", model="gemini-2.0-flash")
    image = await uploaded(alice_auth, "photo.webp", IMAGES["image/webp"])
    table = await uploaded(alice_auth, "cities.csv", CSV.encode())

    response = await chat(
        alice_auth, message="Describe", provider="gemini", attachments=[image, table]
    )

    assert response.status_code == 200, response.content
    assert fake_gemini.chat_requests[-1].json["contents"][-1] == {
        "role": "user",
        "parts": [
            {"inline_data": {"mime_type": "image/webp", "data": b64(IMAGES["image/webp"])}},
            {"text": f"Describe\n\nAttached file cities.csv:\n```\n{CSV}\n```"},
        ],
    }


@pytest.mark.parametrize(
    ("provider", "model", "named"),
    [("openai", "gpt-3.5-turbo", "gpt-3.5-turbo (OpenAI)"), ("local", "", "(Local model)")],
)
async def test_a_model_without_vision_is_refused_naming_those_that_can(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, provider: str, model: str, named: str
) -> None:
    image = await uploaded(alice_auth, "shot.png", png())

    response = await chat(
        alice_auth, message="What is this?", provider=provider, model=model, attachments=[image]
    )

    assert response.status_code == 400
    words = response.json()["error"]["message"]
    assert named in words and "cannot read images" in words
    assert "OpenAI gpt-4o…" in words and "Anthropic claude-…" in words
    assert "Google Gemini gemini-…" in words and "Ollama" in words
    assert not fake_openai.chat_requests
    assert await Attachment.objects.filter(pk=image, message=None).aexists()  # still unsent


async def test_a_file_goes_with_one_message_only(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    file_id = await uploaded(alice_auth, "notes.md", NOTES.encode())
    first = await chat(alice_auth, message="Read it", attachments=[file_id])
    second = await chat(alice_auth, message="Read it again", attachments=[file_id])

    assert first.status_code == 200
    assert second.status_code == 400
    assert "already sent with a message" in second.json()["error"]["message"]


# --- history ------------------------------------------------------------------------------


async def test_history_carries_the_files_while_they_fit_and_says_so_after(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI, settings: Any
) -> None:
    notes = await uploaded(alice_auth, "notes.md", NOTES.encode())
    image = await uploaded(alice_auth, "shot.png", png())
    first = await chat(alice_auth, message="Keep these", attachments=[notes, image])
    conversation_id = first.json()["conversation_id"]

    await chat(alice_auth, message="And now?", conversation_id=conversation_id)
    earlier = fake_openai.chat_requests[-1].json["messages"][0]
    assert earlier == {
        "role": "user",
        "content": [
            {"type": "text", "text": f"Keep these\n\nAttached file notes.md:\n```\n{NOTES}\n```"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(png())}"}},
        ],
    }

    # An image counts as 800 tokens: with room for the texts only, the files stay behind.
    settings.LLM_HISTORY_TOKENS = 200
    await chat(alice_auth, message="And later?", conversation_id=conversation_id)
    messages = fake_openai.chat_requests[-1].json["messages"]
    assert messages[0] == {
        "role": "user",
        "content": "Keep these\n\n[Attached: notes.md, shot.png (not sent again: the "
        "conversation is too long to send them again)]",
    }
    assert messages[-1] == {"role": "user", "content": "And later?"}


async def test_history_images_are_left_out_in_words_for_a_model_without_vision(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    image = await uploaded(alice_auth, "shot.png", png())
    first = await chat(alice_auth, message="Look", attachments=[image])

    response = await chat(
        alice_auth,
        message="Now in words",
        conversation_id=first.json()["conversation_id"],
        model="gpt-3.5-turbo",
    )

    assert response.status_code == 200  # not refused: nothing was attached to this message
    earlier = fake_openai.chat_requests[-1].json["messages"][0]
    assert earlier == {
        "role": "user",
        "content": "Look\n\n[Attached: shot.png (not sent again: this model cannot read images)]",
    }


# --- stored and shown, and deleted with the conversation ----------------------------------


async def test_the_conversation_lists_each_messages_files(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    file_id = await uploaded(alice_auth, "notes.md", NOTES.encode())
    sent = await chat(alice_auth, message="Read it", attachments=[file_id])

    detail = await AsyncClient().get(
        f"/api/v1/conversations/{sent.json()['conversation_id']}", headers=alice_auth
    )

    user_message, reply = detail.json()["messages"]
    assert user_message["attachments"] == [
        {"id": file_id, "name": "notes.md", "content_type": "text/markdown", "size": len(NOTES)}
    ]
    assert reply["attachments"] == []


async def test_deleting_the_conversation_deletes_its_files_and_their_bytes(
    alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    file_id = await uploaded(alice_auth, "shot.png", png())
    kept = await uploaded(alice_auth, "later.txt", b"not sent yet")
    sent = await chat(alice_auth, message="Look", attachments=[file_id])
    stored = str((await Attachment.objects.aget(pk=file_id)).file.name)
    assert default_storage.exists(stored)

    response = await AsyncClient().delete(
        f"/api/v1/conversations/{sent.json()['conversation_id']}", headers=alice_auth
    )

    assert response.status_code == 204
    assert not await Attachment.objects.filter(pk=file_id).aexists()
    assert not default_storage.exists(stored)
    assert await Attachment.objects.filter(pk=kept).aexists()  # never sent: not the chat's
