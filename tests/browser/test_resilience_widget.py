"""Providers that stay up, as a person sees them in the widget: who answered after a
fallback and why the others did not, the thinking folded above the answer, the queue
position while a capped server is busy, and the picker naming a failing provider."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiToken, User
from llm.models import FallbackEntry, ProviderConfig
from tests.browser.conftest import sign_in
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


def configure(user: User, fake: Any, kind: str, **fields: Any) -> ProviderConfig:
    config = ProviderConfig(user=user, kind=kind, base_url=fake.base_url, **fields)
    config.set_api_key(fake.api_key)
    config.save()
    return config


def ask(page: Any, live_url: str, provider: str, text: str) -> None:
    sign_in(page, live_url, "alice")
    page.get_by_role("button", name="Chat", exact=True).click()
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    page.get_by_label("Provider").select_option(provider)
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def test_a_reply_that_fell_back_says_who_answered_and_why(
    page: Any,
    live_url: str,
    alice: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    artifacts: Path,
) -> None:
    configure(alice, fake_openai, "openai")
    configure(alice, fake_anthropic, "anthropic", model="claude-sonnet-4-5")
    FallbackEntry.objects.create(user=alice, position=0, provider="anthropic")
    fake_openai.fail(401)
    fake_anthropic.reply("Claude answers instead.", thinking="OpenAI refused; I can help.")

    ask(page, live_url, "openai", "Hello?")

    reply = page.locator(".msg-assistant").last
    expect(reply.locator(".msg-body")).to_have_text("Claude answers instead.")
    badge = reply.locator(".badge", has_text="answered by anthropic/claude-sonnet-4-5")
    expect(badge).to_be_visible()
    assert "openai/gpt-4o:" in (badge.get_attribute("title") or "")
    thinking = reply.locator("details.msg-thinking")
    expect(thinking.locator("summary")).to_contain_text("Thought for")
    expect(thinking).not_to_have_attribute("open", "")
    assert "OpenAI refused" not in reply.locator(".msg-body").inner_text()
    page.screenshot(path=str(artifacts / "widget-fell-back.png"))

    page.reload()  # the stored message says the same
    stored = page.locator(".msg-assistant").last
    expect(stored.locator(".badge", has_text="answered by anthropic")).to_be_visible()
    expect(stored.locator("details.msg-thinking summary")).to_contain_text("Thought for")


def test_a_queued_reply_shows_its_place_and_the_picker_names_a_failing_provider(
    page: Any, live_url: str, alice: User, bob: User, fake_openai: FakeOpenAI, artifacts: Path
) -> None:
    configure(alice, fake_openai, "vllm", model="m", max_concurrent=1)
    configure(bob, fake_openai, "vllm", model="m", max_concurrent=1)
    configure(
        alice,
        fake_openai,
        "openai",
        failures=3,
        open_until=timezone.now() + dt.timedelta(minutes=5),
        failure="Bad key.",
    )
    fake_openai.reply("a long reply " * 20, chunks=["a long reply "] * 20, delay=0.1)

    # Bob's reply, asked of the same server process, holds the server's one slot...
    _, token = ApiToken.issue(bob, "test")
    body = json.dumps({"message": "First", "provider": "vllm", "stream": True}).encode()
    asked = urllib.request.Request(
        f"{live_url}/api/v1/chat",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    holder = threading.Thread(target=lambda: urllib.request.urlopen(asked, timeout=30).read())
    holder.start()
    try:
        while not fake_openai.chat_requests:
            page.wait_for_timeout(20)
        ask(page, live_url, "vllm", "Second")
        # ...so Alice's waits, and says so, then streams once it is her turn.
        reply = page.locator(".msg-assistant .msg-body").last
        expect(reply).to_have_text("waiting: next")
        page.screenshot(path=str(artifacts / "widget-waiting.png"))
        expect(reply).to_contain_text("a long reply", timeout=15_000)
    finally:
        holder.join(30)
    option = page.locator("#cw-provider option[value=openai]")
    expect(option).to_contain_text("failing, retrying at")


def test_a_card_whose_breaker_is_open_says_until_when(
    page: Any, live_url: str, alice: User, fake_openai: FakeOpenAI, artifacts: Path
) -> None:
    until = timezone.now() + dt.timedelta(minutes=3)
    configure(
        alice,
        fake_openai,
        "openai",
        failures=3,
        open_until=until,
        failure="OpenAI refused the API key (401): check it in Settings.",
    )
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/llm/")

    badge = page.locator("#provider-openai .breaker")
    expect(badge).to_have_text(f"failing, retrying at {timezone.localtime(until):%H:%M}")
    assert "refused the API key" in (badge.get_attribute("title") or "")
    page.locator("#provider-openai").screenshot(path=str(artifacts / "settings-breaker-open.png"))
