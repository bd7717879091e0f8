"""axe-core on every page, and on the widget open after a reply: no serious or critical
finding (WCAG 2.1 AA and axe's best practices). A failure lists each finding in words."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from llm.models import Conversation, DailyUsage, Message, ProviderConfig
from tests.browser.axe import assert_accessible
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def history(alice: User) -> Conversation:
    """A conversation with a finished reply, a failed one, and the usage they cost."""
    conversation = Conversation.objects.create(user=alice, title="Bread")
    asked = Message.objects.create(conversation=conversation, role="user", content="How long?")
    Message.objects.create(
        conversation=conversation, role="assistant", content="**Two** hours.", reply_to=asked,
        provider="openai", model="gpt-4o-mini", input_tokens=12, output_tokens=40,
        cost=Decimal("0.000120"), ttft_ms=210, latency_ms=900,
    )  # fmt: skip
    again = Message.objects.create(conversation=conversation, role="user", content="And rye?")
    Message.objects.create(
        conversation=conversation, role="assistant", status="error", reply_to=again,
        provider="openai", model="gpt-4o-mini", error_code="provider_timeout",
        error_message="OpenAI did not answer within 30 seconds: try again.",
    )  # fmt: skip
    DailyUsage.objects.create(
        user=alice, day=timezone.localdate(), provider="openai", model="gpt-4o-mini",
        requests=2, errors=1, input_tokens=12, output_tokens=40, cost=Decimal("0.000120"),
    )  # fmt: skip
    return conversation


PAGES = [
    ("home", "/"),
    ("conversations", "/conversations/"),
    ("compare", "/compare/"),
    ("provider settings", "/settings/llm/"),
    ("API tokens", "/settings/tokens/"),
    ("usage", "/settings/usage/"),
    ("password change", "/accounts/password_change/"),
]


def test_every_signed_in_page(page: Any, live_url: str, history: Conversation) -> None:
    sign_in(page, live_url, "alice")
    for name, path in [*PAGES, ("a conversation", f"/conversations/{history.pk}/")]:
        response = page.goto(f"{live_url}{path}")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        page.wait_for_load_state("networkidle")
        assert_accessible(page, f"{name} ({path})")


def test_the_signed_out_pages(page: Any, live_url: str) -> None:
    for name, path in [("sign in", "/accounts/login/"), ("sign up", "/accounts/signup/")]:
        page.goto(f"{live_url}{path}")
        assert_accessible(page, f"{name} ({path})")
    # A form sent back with its errors is a page too.
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-error, .errorlist").first).to_be_visible()
    assert_accessible(page, "sign in with an error")


def test_the_staff_dashboard(page: Any, live_url: str, history: Conversation) -> None:
    User.objects.create_user("root", password=PASSWORD, role=User.Role.ADMIN)
    sign_in(page, live_url, "root")
    for path in ("/admin/usage/", "/admin/"):
        page.goto(f"{live_url}{path}")
        assert_accessible(page, f"the admin ({path})")


def test_the_widget_open_after_a_reply(
    page: Any, live_url: str, alice: User, fake_openai: FakeOpenAI
) -> None:
    config = ProviderConfig(user=alice, kind="openai", base_url=fake_openai.base_url)
    config.set_api_key(fake_openai.api_key)
    config.save()
    alice.default_provider = "openai"
    alice.monthly_budget = Decimal("1.00")  # the picker's budget warning is shown too
    alice.save()
    DailyUsage.objects.create(
        user=alice, day=timezone.localdate(), provider="openai", model="gpt-4o", requests=9,
        cost=Decimal("0.85"),
    )  # fmt: skip
    fake_openai.reply("Here is **bold** and a list:\n\n- one\n- two\n\n```\ncode\n```")
    sign_in(page, live_url, "alice")
    page.get_by_role("button", name="Chat", exact=True).click()
    expect(page.locator("#cw-conn")).to_have_text("Connected")
    expect(page.locator(".cw-budget")).to_contain_text("You have used 85%")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Show me formatting")
    box.press("Enter")
    expect(page.locator(".msg-assistant .msg-meta")).to_contain_text("out")
    assert_accessible(page, "the widget after a reply")
    # The conversation list panel too.
    page.get_by_role("button", name="Conversations").click()
    expect(page.locator("#cw-history a").first).to_be_visible()
    assert_accessible(page, "the widget's conversation list")
