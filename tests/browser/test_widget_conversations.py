"""The widget's conversation list in a real browser: search with the match marked, rename in
place (the header follows), pin to the top, and the conversations page's bulk delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import connection
from playwright.sync_api import expect

from accounts.models import User
from llm.models import Conversation
from tests.browser.conftest import sign_in
from tests.test_conversation_search import talk


def settled(page: Any) -> None:
    """htmx wires swapped-in content once it settles (20 ms on): a person never clicks that
    fast, Playwright does."""
    page.wait_for_function(
        "() => !document.querySelector('#cw-history.htmx-settling, #cw-history .htmx-settling')"
    )


def open_list(page: Any) -> Any:
    page.get_by_role("button", name="Chat", exact=True).click()
    page.get_by_role("button", name="Conversations").click()
    history = page.get_by_role("navigation", name="Conversations")
    expect(history.get_by_role("link").first).to_be_focused()
    settled(page)
    return history


def test_search_and_rename_in_the_widget(
    page: Any, live_url: str, alice: User, bob: User, artifacts: Path
) -> None:
    talk(
        alice, "Trip to Lisbon", "Where should I eat?", "Try the <b>grilled</b> sardines in Alfama."
    )
    talk(alice, "Taxes", "What can I deduct?", "Home office costs.", days_ago=1)
    talk(alice, "Pasta", "How long to boil?", "About nine minutes.", days_ago=2)
    talk(bob, "Bob's sardines", "sardines?", "sardines!")
    sign_in(page, live_url, "alice")
    history = open_list(page)
    rows = history.locator(".cw-conv")
    expect(rows).to_have_count(3)

    history.get_by_role("searchbox", name="Search conversations").fill("sardines")
    expect(rows).to_have_count(1)
    found = rows.first
    expect(found.locator(".cw-conv-title")).to_have_text("Trip to Lisbon")
    expect(found.locator("mark")).to_have_text("sardines")
    settled(page)
    # Markup in a message is never markup in the snippet: SQLite's snippet shows it as
    # text, PostgreSQL's ts_headline drops the tags; neither renders a <b>.
    shown = "<b>grilled</b>" if connection.vendor == "sqlite" else "grilled sardines"
    expect(found.locator(".cw-conv-snippet")).to_contain_text(shown)
    assert found.locator(".cw-conv-snippet b").count() == 0
    page.screenshot(path=str(artifacts / "widget-search.png"))

    found.get_by_role("button", name="Rename “Trip to Lisbon”").click()
    box = history.get_by_role("textbox", name="New title for “Trip to Lisbon”")
    expect(box).to_be_focused()
    expect(box).to_have_value("Trip to Lisbon")
    box.fill("Lisbon food")
    box.press("Enter")
    expect(history.get_by_role("link", name="Lisbon food")).to_be_focused()
    assert Conversation.objects.get(user=alice, title="Lisbon food")

    # Open it, rename it again from the list: the header follows.
    history.get_by_role("link", name="Lisbon food").click()
    expect(page.locator("#cw-title")).to_have_text("Lisbon food")
    page.get_by_role("button", name="Conversations").click()
    expect(history.get_by_role("link", name="Lisbon food")).to_have_attribute(
        "aria-current", "true"
    )
    settled(page)
    history.get_by_role("button", name="Rename “Lisbon food”").click()
    box = history.get_by_role("textbox", name="New title for “Lisbon food”")
    box.fill("   ")
    box.press("Enter")
    expect(history.get_by_role("alert")).to_have_text(
        "Give the conversation a title: a word or two will do."
    )
    box.fill("Eating in Lisbon")
    box.press("Enter")
    expect(page.locator("#cw-title")).to_have_text("Eating in Lisbon")
    expect(history.get_by_role("link", name="Eating in Lisbon")).to_be_focused()  # settled

    # Escape cancels a rename and leaves the list open.
    history.get_by_role("button", name="Rename “Eating in Lisbon”").click()
    history.get_by_role("textbox", name="New title for “Eating in Lisbon”").press("Escape")
    expect(history.get_by_role("link", name="Eating in Lisbon")).to_be_visible()
    expect(history).to_be_visible()
    assert Conversation.objects.filter(user=alice, title="Eating in Lisbon").exists()


def test_pin_in_the_widget_moves_it_to_the_top(page: Any, live_url: str, alice: User) -> None:
    talk(alice, "Newest", "hi", days_ago=0)
    talk(alice, "Oldest", "hi", days_ago=5)
    sign_in(page, live_url, "alice")
    history = open_list(page)
    titles = history.locator(".cw-conv-title")
    expect(titles).to_have_text(["Newest", "Oldest"])

    history.get_by_role("button", name="Pin “Oldest”").click()
    expect(titles).to_have_text(["Pinned · Oldest", "Newest"])
    settled(page)
    assert Conversation.objects.get(title="Oldest").pinned
    history.get_by_role("button", name="Unpin “Oldest”").click()
    expect(titles).to_have_text(["Newest", "Oldest"])


def test_bulk_delete_on_the_page_counts_then_asks(
    page: Any, live_url: str, alice: User, artifacts: Path
) -> None:
    for title in ("One", "Two", "Three"):
        talk(alice, title, "hi")
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/conversations/")
    delete = page.get_by_role("button", name="Delete selected…")
    expect(delete).to_be_disabled()
    page.get_by_role("checkbox", name="Select “One”").check()
    page.get_by_role("checkbox", name="Select “Three”").check()
    expect(page.locator("[data-bulk-count]")).to_have_text("2 selected")
    page.screenshot(path=str(artifacts / "conversations-bulk.png"), full_page=True)
    delete.click()
    expect(page.get_by_role("heading", name="Delete 2 conversations?")).to_be_visible()
    page.get_by_role("button", name="Delete 2 conversations").click()
    expect(page.get_by_text("Deleted 2 conversations.")).to_be_visible()
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Two"]
