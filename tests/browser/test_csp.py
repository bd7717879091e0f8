"""The Content-Security-Policy in Chromium: every page a person or staff uses, with its
scripts running (the widget's WebSocket, a streamed reply, htmx swaps, the admin's own
JavaScript), reports no violation; an inline script injected on purpose is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from llm.models import DailyUsage, Message
from tests.browser.conftest import sign_in
from tests.browser.test_chat_widget import open_widget, openai_for_alice
from tests.conftest import PASSWORD
from tests.fakes.openai_server import FakeOpenAI

__all__ = ["openai_for_alice"]

# Runs in every document before the page's own scripts (Playwright's init scripts are
# not subject to the page's policy).
WATCH = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolation([e.violatedDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber,
                       e.sample].join(" | "));
});
"""

REPLY = (
    "Here is a table:\n\n| left | right | centre |\n|:--|--:|:-:|\n| a | 1 | x |\n\n"
    "And code:\n\n```python\nprint('hi')\n```\n"
)


@pytest.fixture
def violations(page: Any) -> Iterator[list[str]]:
    """Every violation the page's documents report, as events and as console errors."""
    seen: list[str] = []
    page.expose_function("cspViolation", lambda text: seen.append(f"{page.url}: {text}"))
    page.add_init_script(WATCH)

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            seen.append(f"{page.url}: console: {message.text}")

    page.on("console", on_console)
    yield seen


def assert_enforced(page: Any, violations: list[str]) -> None:
    """The watcher works and the policy is enforced: an injected inline script is refused."""
    before = len(violations)
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.inlineRan = true'; document.body.append(s); }"
    )
    for _ in range(50):
        if len(violations) > before:
            break
        page.wait_for_timeout(100)
    assert any("script-src" in v for v in violations[before:]), violations
    assert page.evaluate("() => window.inlineRan") is None


def test_a_persons_pages_report_no_violation(
    page: Any,
    live_url: str,
    alice: User,
    openai_for_alice: FakeOpenAI,
    violations: list[str],
) -> None:
    words = REPLY.split(" ")
    openai_for_alice.reply(REPLY, chunks=[w + " " for w in words[:-1]] + [words[-1]], delay=0.02)
    sign_in(page, live_url, "alice")

    # Home with the widget: its WebSocket connects (connect-src 'self' covers ws:).
    open_widget(page)
    box = page.get_by_role("textbox", name="Message")
    box.fill("A table, please")
    box.press("Enter")
    reply = page.locator(".msg-assistant").last
    expect(reply.locator("td.align-right")).to_have_text("1")
    expect(reply.get_by_role("button", name="Copy code")).to_be_visible()
    expect(reply.locator(".msg-meta")).to_contain_text(" out")
    assert Message.objects.get(role="assistant").status == "complete"

    # Reloaded: the widget fetches the conversation with htmx and renders it again.
    page.reload()
    expect(page.locator("#cw-title")).to_have_text("A table, please")
    expect(page.locator(".msg-assistant td.align-center")).to_have_text("x")
    page.get_by_role("button", name="Conversations").click()
    expect(
        page.get_by_role("navigation", name="Conversations").get_by_role("link")
    ).not_to_have_count(0)

    page.goto(f"{live_url}/conversations/")
    page.get_by_role("link", name="A table, please").first.click()
    expect(page.locator(".thread td.align-left")).to_have_text("a")

    page.goto(f"{live_url}/settings/llm/")
    card = page.locator("#provider-openai")
    card.get_by_role("link", name="Edit OpenAI").click()
    key = card.get_by_label("API key")
    expect(key).to_be_visible()
    card.get_by_role("button", name="Show").click()
    expect(key).to_have_attribute("type", "text")
    card.get_by_role("link", name="Cancel").click()
    expect(card.get_by_label("API key")).to_have_count(0)

    page.goto(f"{live_url}/settings/tokens/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token")
    expect(token).to_be_visible()
    token.focus()
    # Selected on focus by settings.js (it was an inline onfocus handler).
    assert page.evaluate(
        "() => { const i = document.getElementById('new-token');"
        " return i.selectionStart === 0 && i.selectionEnd === i.value.length; }"
    )

    page.goto(f"{live_url}/accounts/password_change/")
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    assert violations == []
    assert_enforced(page, violations)


def test_staff_pages_and_the_admin_report_no_violation(
    page: Any, live_url: str, alice: User, violations: list[str]
) -> None:
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    DailyUsage.objects.create(
        user=alice,
        day=date.today(),
        provider="openai",
        model="gpt-4o",
        requests=3,
        input_tokens=30,
        output_tokens=90,
        cost=Decimal("0.01"),
    )
    sign_in(page, live_url, "root")

    page.goto(f"{live_url}/admin/")
    expect(page.get_by_role("link", name="Usage dashboard")).to_be_visible()
    page.get_by_role("link", name="Usage dashboard").click()
    expect(page.locator("svg.chart rect").last).to_be_attached()

    page.goto(f"{live_url}/admin/accounts/user/")
    page.locator("#action-toggle").check()  # the admin's actions.js
    expect(page.locator(".action-counter")).to_contain_text("2 of 2")
    page.goto(f"{live_url}/admin/accounts/user/{root.pk}/change/")
    expect(page.locator("#id_username")).to_have_value("root")
    page.goto(f"{live_url}/admin/accounts/user/add/")
    page.goto(f"{live_url}/admin/llm/message/")
    page.goto(f"{live_url}/admin/llm/modelprice/add/")
    expect(page.locator("#id_effective_from")).to_be_visible()
    page.get_by_role("link", name="Today").first.click()  # DateTimeShortcuts.js
    expect(page.locator("#id_effective_from")).not_to_have_value("")
    assert violations == []
    assert_enforced(page, violations)
