"""The widget's "/" template picker and its Preset menu, in a real browser against the fake
OpenAI server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from llm.models import Message, Preset, PromptTemplate
from tests.browser.conftest import sign_in
from tests.browser.test_chat_widget import open_widget, openai_for_alice
from tests.fakes.openai_server import FakeOpenAI

__all__ = ["openai_for_alice"]


def test_slash_picks_a_template_asks_for_its_placeholders_and_fills_the_box(
    page: Any,
    live_url: str,
    alice: User,
    charlie: User,
    openai_for_alice: FakeOpenAI,
    artifacts: Path,
) -> None:
    PromptTemplate.objects.create(
        user=alice, name="Translate", text="Translate {text} into {language}, keep {{braces}}."
    )
    PromptTemplate.objects.create(user=alice, name="Summarise", text="Summarise this: {doc}")
    PromptTemplate.objects.create(
        user=charlie, name="House greeting", text="Hello from the team.", published=True
    )
    sign_in(page, live_url, "alice")
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")

    box.type("/")
    listbox = page.get_by_role("listbox", name="Templates")
    expect(listbox).to_be_visible()
    options = listbox.get_by_role("option")
    expect(options).to_have_count(3)
    expect(listbox.get_by_role("option", name="House greeting")).to_contain_text("published")
    # Esc closes the list, not the chat.
    box.press("Escape")
    expect(listbox).to_be_hidden()
    expect(page.get_by_role("dialog")).to_be_visible()
    box.fill("")

    box.type("/tra")
    expect(options).to_have_count(1)
    translate = listbox.get_by_role("option", name="Translate")
    expect(translate).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", translate.get_attribute("id") or "")
    box.press("ArrowDown")  # one option: stays on it
    expect(translate).to_have_attribute("aria-selected", "true")
    page.screenshot(path=str(artifacts / "template-picker-list.png"))
    box.press("Enter")

    expect(listbox).to_be_hidden()
    text = page.get_by_label("text", exact=True)
    expect(text).to_be_focused()
    text.fill("Guten Morgen")
    page.get_by_label("language", exact=True).fill("English")
    page.screenshot(path=str(artifacts / "template-picker-form.png"))
    page.get_by_role("button", name="Insert").click()

    expect(box).to_have_value("Translate Guten Morgen into English, keep {braces}.")
    expect(box).to_be_focused()
    page.screenshot(path=str(artifacts / "template-picker.png"))
    # Nothing is sent until Send.
    expect(page.locator(".msg-user")).to_have_count(0)
    assert not Message.objects.exists()

    openai_for_alice.reply("Translate Good morning into English.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".msg-user .msg-body")).to_have_text(
        "Translate Guten Morgen into English, keep {braces}."
    )
    expect(page.locator(".msg-assistant .msg-meta").last).to_contain_text("gpt-4o")


def test_the_preset_menu_sends_the_preset_with_each_message(
    page: Any, live_url: str, alice: User, charlie: User, openai_for_alice: FakeOpenAI
) -> None:
    Preset.objects.create(
        user=alice,
        name="Pirate",
        provider="openai",
        model="gpt-4o-mini",
        system_prompt="Talk like a pirate.",
        temperature=1.2,
    )
    Preset.objects.create(user=charlie, name="House", provider="openai", published=True)
    sign_in(page, live_url, "alice")
    open_widget(page)

    menu = page.get_by_label("Preset")
    expect(menu.locator("option", has_text="House (published)")).to_have_count(1)
    menu.select_option(label="Pirate")
    expect(page.get_by_label("Provider")).to_be_disabled()
    expect(page.locator("#cw-preset-tip")).to_contain_text("OpenAI · gpt-4o-mini")

    openai_for_alice.reply("Arr, matey.")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hello")
    box.press("Enter")
    expect(page.locator(".msg-assistant .msg-body").last).to_contain_text("Arr, matey.")
    sent = openai_for_alice.chat_requests[-1].json
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert sent["temperature"] == 1.2

    # The choice is remembered across pages.
    page.reload()
    expect(page.get_by_label("Preset")).to_have_value(str(Preset.objects.get(name="Pirate").pk))
