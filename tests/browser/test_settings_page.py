"""The settings page in Chromium: set up a provider that points at a fake, fetch models,
test the connection, save, see it verified, then chat with it from the widget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from accounts.models import User
from llm.models import ProviderConfig
from tests.browser.conftest import sign_in
from tests.fakes.openai_server import FakeOpenAI


def test_from_nothing_to_a_verified_provider_and_a_reply(
    page: Any, live_url: str, alice: User, fake_openai: FakeOpenAI, artifacts: Path
) -> None:
    fake_openai.models = ["gpt-4o", "gpt-4o-mini", "o3-mini", "gpt-4.1-nano"]
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/llm/")
    expect(page.get_by_role("heading", name="LLM settings")).to_be_visible()
    page.screenshot(path=artifacts / "settings-overview.png", full_page=True)

    card = page.locator("#provider-openai")
    expect(card.locator(".status")).to_have_text("Not configured")
    card.get_by_role("link", name="Set up OpenAI").click()
    key = card.get_by_label("API key")
    expect(key).to_be_visible()
    key.fill(fake_openai.api_key)
    card.get_by_role("button", name="Show").click()
    expect(key).to_have_attribute("type", "text")
    card.get_by_role("button", name="Hide").click()
    expect(key).to_have_attribute("type", "password")
    card.get_by_label("Base URL").fill(fake_openai.base_url)

    card.get_by_role("button", name="Fetch models").click()
    expect(card.get_by_text("4 models found")).to_be_visible()
    options = card.locator("datalist#models-openai option")
    expect(options).to_have_count(4)
    model = card.locator("#id_openai_model")
    model.fill("gpt-4o-mini")
    # The slider and the number box move together.
    card.get_by_label("Temperature", exact=True).fill("0.3")
    expect(card.locator("input[type=range]")).to_have_value("0.3")

    card.get_by_role("button", name="Test connection").click()
    expect(card.get_by_text("✓ Connected in")).to_be_visible()
    expect(card.get_by_text("4 models available")).to_be_visible()
    page.screenshot(path=artifacts / "settings-edit-tested.png", full_page=True)

    card.get_by_role("button", name="Save").click()
    expect(card.get_by_text("OpenAI saved.")).to_be_visible()
    expect(card.locator(".status")).to_contain_text("Verified")
    expect(card.get_by_text("••••" + fake_openai.api_key[-4:])).to_be_visible()
    assert fake_openai.api_key not in page.content()
    config = ProviderConfig.objects.get(user=alice, kind="openai")
    assert config.model == "gpt-4o-mini" and config.temperature == 0.3
    assert config.last_verified_at is not None

    page.get_by_label("The chat starts with").select_option("openai")
    page.get_by_role("button", name="Set default").click()
    expect(page.get_by_text("The chat starts with OpenAI.")).to_be_visible()
    page.screenshot(path=artifacts / "settings-verified.png", full_page=True)

    # The widget now starts with OpenAI and the reply comes from the fake.
    fake_openai.reply("Hello from the settings test.")
    page.reload()
    page.get_by_role("button", name="Chat").click()
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    expect(page.locator("#cw-provider")).to_have_value("openai")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Are you there?")
    box.press("Enter")
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_have_text("Hello from the settings test.")
    assert fake_openai.chat_requests[-1].json["model"] == "gpt-4o-mini"


def test_validation_and_delete_with_confirmation(
    page: Any, live_url: str, alice: User, artifacts: Path, settings: Any
) -> None:
    settings.LLM_PRIVATE_HOSTS = []
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/llm/")
    card = page.locator("#provider-anthropic")
    card.get_by_role("link", name="Set up Anthropic").click()
    card.get_by_label("API key").fill("sk-ant with space")
    card.get_by_label("Base URL").fill("http://10.0.0.5/")
    card.get_by_label("Max tokens").fill("40000")
    card.get_by_role("button", name="Save").click()
    expect(card.get_by_text("contains a space or a line break")).to_be_visible()
    expect(card.get_by_text("Coppertone will not connect to 10.0.0.5")).to_be_visible()
    expect(card.get_by_text("At most 32000 tokens per reply.")).to_be_visible()
    expect(card.get_by_label("Max tokens")).to_have_value("40000")
    page.screenshot(path=artifacts / "settings-validation.png", full_page=True)

    card.get_by_label("API key").fill("sk-ant-valid-key-1234")
    card.get_by_label("Base URL").fill("https://api.anthropic.com")
    card.get_by_label("Max tokens").fill("4000")
    card.get_by_role("button", name="Save").click()
    expect(card.locator(".status")).to_have_text("Configured · not tested")

    card.get_by_role("link", name="Remove Anthropic").click()
    expect(card.get_by_text("Remove your Anthropic settings?")).to_be_visible()
    card.get_by_role("button", name="Yes, remove").click()
    expect(card.get_by_text("Anthropic removed, with its key.")).to_be_visible()
    expect(card.locator(".status")).to_have_text("Not configured")
    assert not ProviderConfig.objects.filter(user=alice).exists()


def test_tokens_page_creates_shows_once_and_revokes(
    page: Any, live_url: str, alice: User, artifacts: Path
) -> None:
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/tokens/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token")
    expect(token).to_have_value(re.compile(r"^cpt_"))
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    page.screenshot(path=artifacts / "tokens-created.png", full_page=True)
    page.get_by_role("link", name="Revoke token laptop").click()
    page.get_by_role("button", name="Yes, revoke").click()
    expect(page.get_by_text("revoked: anything using it is refused")).to_be_visible()
    expect(page.get_by_text("No tokens yet.")).to_be_visible()


def test_settings_fit_a_phone(phone_page: Any, live_url: str, alice: User, artifacts: Path) -> None:
    page = phone_page
    sign_in(page, live_url, "alice")
    page.goto(f"{live_url}/settings/llm/")
    page.locator("#provider-openai").get_by_role("link", name="Set up OpenAI").click()
    expect(page.locator("#provider-openai").get_by_label("API key")).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=artifacts / "settings-phone.png", full_page=False)
    page.goto(f"{live_url}/settings/tokens/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=artifacts / "tokens-phone.png", full_page=True)
