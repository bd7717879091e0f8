"""The floating chat widget in a real browser, against the fake OpenAI server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from llm.models import Message, ProviderConfig
from tests.browser.conftest import sign_in
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def openai_for_alice(alice: User, fake_openai: FakeOpenAI) -> FakeOpenAI:
    config = ProviderConfig(user=alice, kind="openai", base_url=fake_openai.base_url)
    config.set_api_key(fake_openai.api_key)
    config.save()
    alice.default_provider = "openai"
    alice.save()
    return fake_openai


def open_widget(page: Any) -> Any:
    page.get_by_role("button", name="Chat", exact=True).click()
    panel = page.get_by_role("dialog", name="New conversation")
    expect(panel).to_be_visible()
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    expect(page.get_by_label("Provider")).to_have_value("openai")
    return panel


def test_stream_stop_and_find_it_again_after_reload(
    page: Any, live_url: str, alice: User, openai_for_alice: FakeOpenAI, artifacts: Path
) -> None:
    words = [f"word{i} " for i in range(200)]
    openai_for_alice.reply("".join(words), chunks=words, delay=0.08)
    sign_in(page, live_url, "alice")
    open_widget(page)

    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    box.fill("Tell me a long story")
    box.press("Enter")

    expect(page.locator(".msg-user .msg-body")).to_have_text("Tell me a long story")
    expect(box).to_have_value("")
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("word3")
    early = len(reply.inner_text())
    # The text grows as tokens arrive.
    page.wait_for_function(
        "n => document.querySelector('.msg-assistant:last-child .msg-body').textContent.length > n",
        arg=early,
    )
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_have_text("Stop")
    page.screenshot(path=str(artifacts / "widget-streaming.png"))

    clicked = time.monotonic()
    stop.click()
    expect(page.locator(".msg-assistant .badge", has_text="Stopped")).to_be_visible()
    stopped_after = time.monotonic() - clicked
    print(f"Stop click to 'Stopped' shown: {stopped_after * 1000:.0f} ms")
    expect(page.get_by_role("button", name="Send", exact=True)).to_have_text("Send")
    shown = reply.inner_text()
    page.wait_for_timeout(300)
    assert reply.inner_text() == shown  # nothing more arrives after Stop
    assert openai_for_alice.wait_closed(2)

    row = Message.objects.get(role="assistant")
    assert row.status == "stopped"
    assert row.content.strip() == shown.strip()
    assert "word199" not in row.content
    meta = page.locator(".msg-assistant .msg-meta").last
    expect(meta).to_contain_text("gpt-4o")
    expect(meta).to_contain_text(" out")
    page.screenshot(path=str(artifacts / "widget-stopped.png"))

    page.reload()
    # The panel reopens on the same conversation, loaded from the server.
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.locator("#cw-title")).to_have_text("Tell me a long story")
    history_reply = page.locator(".msg-assistant").last
    expect(history_reply.locator(".badge")).to_have_text("Stopped")
    expect(history_reply.locator(".msg-body")).to_contain_text("word3")
    page.get_by_role("button", name="Conversations").click()
    history = page.get_by_role("navigation", name="Conversations")
    entry = history.get_by_role("link", name="Tell me a long story")
    expect(entry).to_be_visible()
    expect(entry).to_contain_text("2 messages")
    page.screenshot(path=str(artifacts / "widget-history.png"))


def test_markdown_reply_with_copy_button_and_shift_enter(
    page: Any, live_url: str, alice: User, openai_for_alice: FakeOpenAI, artifacts: Path
) -> None:
    openai_for_alice.reply(
        "Here is **bold** and code:\n\n```python\nprint('hi')\n```\n\n<img src=x onerror=alert(1)>"
    )
    sign_in(page, live_url, "alice")
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    box.press("Enter")

    reply = page.locator(".msg-assistant").last
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("pre")).to_have_text("print('hi')\n")
    expect(reply.locator("img")).to_have_count(0)
    copy = reply.get_by_role("button", name="Copy code")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    expect(reply.locator(".msg-meta")).to_contain_text("$")
    assert Message.objects.get(role="user").content == "first line\nsecond line"
    page.screenshot(path=str(artifacts / "widget-markdown.png"))


def test_error_is_shown_inline_and_retry_sends_again(
    page: Any, live_url: str, alice: User, openai_for_alice: FakeOpenAI
) -> None:
    openai_for_alice.fail(401).reply("Second time lucky.")
    sign_in(page, live_url, "alice")
    open_widget(page)
    page.get_by_role("textbox", name="Message").fill("Are you there?")
    page.get_by_role("textbox", name="Message").press("Enter")

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("key")
    expect(page.locator(".msg-user .msg-body").first).to_have_text("Are you there?")
    alert.get_by_role("button", name="Retry").click()
    expect(page.locator(".msg-assistant .msg-body").last).to_have_text("Second time lucky.")


def test_usable_at_phone_width(
    phone_page: Any, live_url: str, alice: User, openai_for_alice: FakeOpenAI, artifacts: Path
) -> None:
    openai_for_alice.reply("Small screens work too.")
    page = phone_page
    sign_in(page, live_url, "alice")
    open_widget(page)
    panel = page.locator("#cw-panel").bounding_box()
    assert panel["width"] == 375  # the panel takes the whole screen
    page.get_by_role("textbox", name="Message").fill("Hello from a phone")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".msg-assistant .msg-body").last).to_have_text("Small screens work too.")
    page.screenshot(path=str(artifacts / "widget-phone.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#cw-panel")).to_be_hidden()
    expect(page.get_by_role("button", name="Chat", exact=True)).to_be_focused()


def test_typing_indicator_then_the_reply_survives_a_dropped_connection(
    page: Any, live_url: str, asgi_server: Any, alice: User, openai_for_alice: FakeOpenAI
) -> None:
    words = [f"slow{i} " for i in range(40)]
    openai_for_alice.reply("".join(words), chunks=words, delay=0.1, first_byte_delay=0.8)
    sign_in(page, live_url, "alice")
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")
    box.fill("Wait for it")
    box.press("Enter")
    expect(page.locator(".msg-assistant .typing")).to_be_visible()
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("slow1")
    expect(page.locator(".typing")).to_have_count(0)

    assert asgi_server.drop_sockets() == 1
    expect(page.locator("#cw-conn")).to_contain_text("Offline")
    expect(page.locator("#cw-conn")).to_have_text("Connected", timeout=8000)
    # The reply ran on in the server; the widget follows it again from where it was.
    expect(page.locator(".msg-assistant .msg-meta").last).to_contain_text(" out", timeout=15_000)
    row = Message.objects.get(role="assistant")
    assert row.status == "complete"
    assert reply.inner_text().strip() == row.content.strip() == "".join(words).strip()


def test_conversations_page_open_continue_and_delete(
    page: Any, live_url: str, alice: User, artifacts: Path
) -> None:
    from decimal import Decimal

    from llm.models import Conversation

    convo = Conversation.objects.create(user=alice, title="Sourdough schedule")
    Message.objects.create(conversation=convo, role="user", content="When do I feed the starter?")
    Message.objects.create(
        conversation=convo,
        role="assistant",
        content="Feed it **twice a day**:\n\n1. 8:00\n2. 20:00\n\n"
        "```\n50 g flour + 50 g water\n```",
        model="gpt-4o",
        input_tokens=15,
        output_tokens=30,
        cost=Decimal("0.000338"),
        latency_ms=2300,
    )
    Conversation.objects.create(user=alice, title="Empty one")
    sign_in(page, live_url, "alice")
    page.get_by_role("link", name="Conversations", exact=True).click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    expect(page.get_by_role("row", name="Sourdough schedule")).to_contain_text("2")
    page.screenshot(path=str(artifacts / "conversations-list.png"))

    page.get_by_role("link", name="Sourdough schedule", exact=True).click()
    expect(page.get_by_role("heading", name="Sourdough schedule")).to_be_visible()
    expect(page.locator(".thread strong")).to_have_text("twice a day")
    expect(page.locator(".thread").get_by_role("button", name="Copy code")).to_be_visible()
    page.screenshot(path=str(artifacts / "conversation-page.png"))

    page.get_by_role("button", name="Continue in chat").click()
    expect(page.locator("#cw-title")).to_have_text("Sourdough schedule")
    expect(page.locator("#cw-log strong")).to_have_text("twice a day")
    page.keyboard.press("Escape")

    page.goto(f"{live_url}/conversations/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("link", name="Delete “Empty one”").click()
    expect(page.get_by_role("row", name="Empty one")).to_have_count(0)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Sourdough schedule"]


def test_keyboard_only(page: Any, live_url: str, alice: User, openai_for_alice: FakeOpenAI) -> None:
    openai_for_alice.reply("Typed without a mouse.")
    sign_in(page, live_url, "alice")
    launcher = page.get_by_role("button", name="Chat", exact=True)
    launcher.focus()
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    # The picker and the socket come up on opening; a busy machine takes a moment.
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    expect(page.get_by_label("Provider")).to_have_value("openai")
    page.keyboard.type("Hello")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-assistant .msg-body").last).to_have_text("Typed without a mouse.")
    expect(box).to_be_focused()
    # The reply has ended (New is disabled while it streams).
    expect(page.locator(".msg-assistant .msg-meta").last).to_contain_text(" out")

    page.get_by_role("button", name="New conversation").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#cw-title")).to_have_text("New conversation")
    page.get_by_role("button", name="Conversations").focus()
    page.keyboard.press("Enter")
    first = page.get_by_role("navigation", name="Conversations").get_by_role("link").first
    expect(first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#cw-title")).to_have_text("Hello")
    expect(page.locator(".msg-assistant .msg-body").last).to_have_text("Typed without a mouse.")
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#cw-panel")).to_be_hidden()
    expect(launcher).to_be_focused()
