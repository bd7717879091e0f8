"""A reply keeps streaming when the person changes pages, reloads, or opens a second tab."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from llm.models import Message
from tests.browser.conftest import sign_in
from tests.browser.test_chat_widget import open_widget, openai_for_alice  # noqa: F401
from tests.fakes.openai_server import FakeOpenAI

WORDS = [f"w{i} " for i in range(60)]
FULL = "".join(WORDS)
SHOWN = "document.querySelector('.msg-assistant:last-child .msg-body').textContent"


def ask_for_a_long_reply(page: Any, live_url: str) -> None:
    sign_in(page, live_url, "alice")
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")
    box.fill("Count slowly")
    box.press("Enter")
    expect(page.locator(".msg-assistant .msg-body").last).to_contain_text("w3 ")


def follows_to_the_stored_end(page: Any) -> None:
    """The widget on `page` shows the reply growing, never doubled, and ending as stored."""
    expect(
        page.locator(".msg-assistant.msg-streaming, .msg-assistant .streaming")
    ).not_to_have_count(0)
    # A function, not an expression: Playwright evals a bare expression in the page,
    # which the Content-Security-Policy (no 'unsafe-eval') refuses.
    page.wait_for_function(f"() => {SHOWN}.includes('w20 ')")
    shown = page.evaluate(SHOWN)
    assert FULL.startswith(shown), shown  # the text so far once, nothing doubled or missing
    expect(page.locator(".msg-assistant .msg-meta").last).to_contain_text(" out", timeout=15_000)
    row = Message.objects.get(role="assistant")
    assert row.status == "complete" and row.content == FULL
    assert page.locator(".msg-assistant .msg-body").last.inner_text().strip() == FULL.strip()


def test_changing_pages_mid_reply_keeps_it_streaming(
    page: Any,
    live_url: str,
    alice: User,
    openai_for_alice: FakeOpenAI,  # noqa: F811
) -> None:
    openai_for_alice.reply(FULL, chunks=WORDS, delay=0.08)
    ask_for_a_long_reply(page, live_url)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    follows_to_the_stored_end(page)


def test_reloading_mid_reply_keeps_it_streaming(
    page: Any,
    live_url: str,
    alice: User,
    openai_for_alice: FakeOpenAI,  # noqa: F811
) -> None:
    openai_for_alice.reply(FULL, chunks=WORDS, delay=0.08)
    ask_for_a_long_reply(page, live_url)

    page.reload()
    follows_to_the_stored_end(page)


def test_two_tabs_show_the_same_reply_and_either_can_stop_it(
    page: Any,
    live_url: str,
    alice: User,
    openai_for_alice: FakeOpenAI,  # noqa: F811
) -> None:
    openai_for_alice.reply("word " * 300, chunks=["word "] * 300, delay=0.05)
    sign_in(page, live_url, "alice")
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")
    box.fill("Talk")
    box.press("Enter")
    first = page.locator(".msg-assistant .msg-body").last
    expect(first).to_contain_text("word word")

    other = page.context.new_page()
    other.goto(live_url + "/")
    second = other.locator(".msg-assistant .msg-body").last
    expect(second).to_contain_text("word word")
    grown = len(other.evaluate(SHOWN))
    other.wait_for_function(f"() => {SHOWN}.length > {grown}")  # live, not a stored copy

    other.get_by_role("button", name="Stop", exact=True).click()
    for tab in (page, other):
        expect(tab.locator(".msg-assistant .msg-meta").last).to_contain_text("Stopped")
    row = Message.objects.get(role="assistant")
    assert row.status == "stopped"
    assert first.inner_text().strip() == second.inner_text().strip() == row.content.strip()
    other.close()
