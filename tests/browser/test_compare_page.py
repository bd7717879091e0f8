"""The compare page in a real browser: three columns where one cannot start, each
streaming with its numbers, and "Continue with this one" opening that conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from llm.models import ProviderConfig
from tests.browser.conftest import sign_in
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


def configure(user: User, fake: FakeOpenAI | FakeAnthropic, kind: str, model: str) -> None:
    config = ProviderConfig(user=user, kind=kind, base_url=fake.base_url, model=model)
    config.set_api_key(fake.api_key)
    config.save()


def test_compare_three_models_and_continue_with_one(
    page: Any,
    live_url: str,
    alice: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    artifacts: Path,
) -> None:
    configure(alice, fake_openai, "openai", "gpt-4o")
    configure(alice, fake_anthropic, "anthropic", "claude-sonnet-4-5")
    fake_openai.reply("GPT's **answer**.", usage=(5, 4))
    fake_anthropic.reply("Claude's answer.", usage=(6, 3))
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/compare/")

    page.locator("#cmp-text").fill("Which is best?")
    rows = page.locator(".cmp-target")
    rows.nth(0).get_by_label("Provider 1").select_option("openai")
    rows.nth(1).get_by_label("Provider 2").select_option("anthropic")
    rows.nth(2).get_by_label("Provider 3").select_option("")
    rows.nth(2).get_by_label("Model", exact=True).fill("gemini-2.0-flash")
    rows.nth(3).get_by_label("Provider 4").select_option("")
    rows.nth(3).get_by_label("Model", exact=True).fill("")
    page.get_by_role("button", name="Compare").click()

    columns = page.locator(".cmp-column")
    expect(columns).to_have_count(3)
    gpt = columns.filter(has_text="openai/gpt-4o")
    expect(gpt.locator(".cmp-body")).to_have_text("GPT's answer.")
    expect(gpt.locator(".cmp-stats")).to_contain_text("5 in · 4 out")
    expect(gpt.locator(".cmp-stats")).to_contain_text("first token")
    claude = columns.filter(has_text="anthropic/claude-sonnet-4-5")
    expect(claude.locator(".cmp-body")).to_have_text("Claude's answer.")
    # A Gemini model, and alice has no Gemini key: that column fails alone, in words.
    failed = columns.filter(has_text="gemini-2.0-flash")
    expect(failed).to_have_class("cmp-column card cmp-failed")
    expect(failed).to_contain_text("not set up")
    page.screenshot(path=str(artifacts / "compare.png"), full_page=True)

    claude.get_by_role("button", name="Continue with this one").click()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    expect(panel.locator("#cw-title")).to_have_text("Which is best?")
    expect(panel.locator(".msg-assistant .msg-body").last).to_have_text("Claude's answer.")
