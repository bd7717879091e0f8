"""Attachments in the widget, in a real browser: an image pasted into the message box
becomes a chip, goes with the message and gets a reply; a model that cannot read it says
so beside the chips and keeps the text."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from llm.models import Attachment, Message, ProviderConfig
from tests.attachment_bytes import png
from tests.browser.conftest import sign_in
from tests.fakes.openai_server import FakeOpenAI

PASTE = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/png" }));
  const box = document.getElementById("cw-input");
  const paste = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent("paste", paste));
}"""


@pytest.fixture
def openai_for_alice(alice: User, fake_openai: FakeOpenAI) -> FakeOpenAI:
    config = ProviderConfig(user=alice, kind="openai", base_url=fake_openai.base_url)
    config.set_api_key(fake_openai.api_key)
    config.save()
    alice.default_provider = "openai"
    alice.save()
    return fake_openai


def _open(page: Any, live_url: str) -> Any:
    sign_in(page, live_url, "alice")
    page.get_by_role("button", name="Chat", exact=True).click()
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    expect(page.get_by_label("Provider")).to_have_value("openai")
    return page.get_by_role("textbox", name="Message")


def test_paste_an_image_see_the_chip_and_get_a_reply(
    page: Any, live_url: str, openai_for_alice: FakeOpenAI, artifacts: Path
) -> None:
    image = png(8, 8)
    openai_for_alice.reply("A small white square.")
    box = _open(page, live_url)

    box.fill("What is in this picture?")
    page.evaluate(PASTE, ["square.png", base64.b64encode(image).decode()])
    chip = page.locator(".cw-chip")
    expect(chip).to_contain_text("square.png")
    expect(chip.locator(".cw-chip-size")).to_have_text(f"{len(image)} bytes")
    expect(page.get_by_role("button", name="Remove square.png")).to_be_visible()

    box.press("Enter")
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("A small white square.")
    expect(page.locator(".msg-user .file-chip")).to_contain_text("square.png")
    expect(page.locator(".cw-chip")).to_have_count(0)  # sent: off the tray
    page.screenshot(path=str(artifacts / "attach-image.png"))

    sent = openai_for_alice.chat_requests[-1].json["messages"][-1]["content"]
    assert sent[0] == {"type": "text", "text": "What is in this picture?"}
    assert (
        sent[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    )
    asked = Message.objects.get(role="user")
    assert list(Attachment.objects.filter(message=asked).values_list("name", flat=True)) == [
        "square.png"
    ]


def test_a_model_without_vision_says_so_beside_the_chips_and_keeps_the_text(
    page: Any, live_url: str, openai_for_alice: FakeOpenAI
) -> None:
    box = _open(page, live_url)
    page.locator("#cw-model").fill("gpt-3.5-turbo")

    box.fill("Describe it")
    page.evaluate(PASTE, ["shot.png", base64.b64encode(png()).decode()])
    expect(page.locator(".cw-chip .cw-chip-size")).not_to_have_text("uploading…")
    box.press("Enter")

    status = page.locator(".cw-attach-status")
    expect(status).to_contain_text("gpt-3.5-turbo (OpenAI) cannot read images")
    expect(status).to_contain_text("gpt-4o")
    expect(box).to_have_value("Describe it")
    expect(page.locator(".cw-chip")).to_have_count(1)
    expect(page.locator(".msg-user")).to_have_count(0)
    assert openai_for_alice.chat_requests == []

    # Removing a chip deletes the upload: nothing is left stored for it.
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.get_by_role("button", name="Remove shot.png").click()
    assert deleted.value.status == 204
    expect(page.locator(".cw-chip")).to_have_count(0)
    expect(page.locator(".cw-attach")).to_be_hidden()
    assert not Attachment.objects.exists()
