"""The usage page, the widget's budget warning and the staff dashboard in a real browser
(screenshots usage-page.png, widget-budget.png and dashboard.png)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from llm import limits
from llm.models import Conversation, DailyUsage, Message
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD

MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("local", "SmolLM2")]


def spend(user: User, days: int, *, scale: str = "0.20") -> None:
    """Some use on each of the last `days` days, across three models."""
    today = timezone.localdate()
    for n in range(days):
        day = today - dt.timedelta(days=n)
        for i, (provider, model) in enumerate(MODELS):
            DailyUsage.objects.create(
                user=user, day=day, provider=provider, model=model, requests=3 + n % 4 + i,
                errors=int(n % 5 == 0), input_tokens=1500 * (n % 3 + 1) + 200 * i,
                output_tokens=900 * (n % 4 + 1), cost=Decimal(scale) * (n % 3 + 1) / (i + 1),
            )  # fmt: skip


@pytest.fixture
def alice_near_budget(alice: User) -> User:
    """$4.10 of a $5.00 budget spent this month: 82%."""
    spend(alice, 40, scale="0.01")
    today = timezone.localdate()
    row = DailyUsage.objects.get(user=alice, day=today, provider="openai")
    row.cost += Decimal("4.10") - limits.month_spend(alice.pk, today)
    row.save()
    alice.monthly_budget = Decimal("5.00")
    alice.save()
    return alice


def test_usage_page_shows_the_month_and_the_budget(
    page: Any, live_url: str, alice_near_budget: User, artifacts: Path
) -> None:
    sign_in(page, live_url, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    settings_nav = page.get_by_role("navigation", name="Settings")
    settings_nav.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    expect(settings_nav.get_by_role("link", name="Usage")).to_have_attribute("aria-current", "page")
    expect(page.locator(".usage-budget")).to_contain_text("82% of this month's")
    expect(page.get_by_role("img", name="Cost per day")).to_be_visible()
    expect(page.get_by_role("img", name="Tokens per day")).to_be_visible()
    expect(page.locator("#usage-models tbody tr")).to_have_count(3)
    page.screenshot(path=str(artifacts / "usage-page.png"), full_page=True)


def test_the_widget_warns_quietly_near_the_budget(
    page: Any, live_url: str, alice_near_budget: User, artifacts: Path
) -> None:
    sign_in(page, live_url, "alice")
    page.get_by_role("button", name="Chat", exact=True).click()
    warning = page.locator(".cw-budget")
    expect(warning).to_contain_text("You have used 82% of this month's $5.00; it resets on 1 ")
    expect(warning.get_by_role("link", name="See your usage")).to_have_attribute(
        "href", "/settings/usage/"
    )
    page.locator("#cw-panel").screenshot(path=str(artifacts / "widget-budget.png"))


def test_staff_dashboard_charts_filters_and_export(
    page: Any, live_url: str, alice: User, bob: User, artifacts: Path
) -> None:
    spend(alice, 20)
    spend(bob, 9, scale="0.07")
    conversation = Conversation.objects.create(user=alice)
    for n in range(40):
        Message.objects.create(
            conversation=conversation, role="assistant", provider=MODELS[n % 3][0],
            model=MODELS[n % 3][1], latency_ms=400 + 37 * n, ttft_ms=120 + 5 * n,
            status="error" if n % 9 == 0 else "complete",
        )  # fmt: skip
    User.objects.create_user("root", password=PASSWORD, role=User.Role.ADMIN)
    sign_in(page, live_url, "root")
    page.goto(f"{live_url}/admin/usage/")
    expect(page.get_by_role("img", name="Spend per day")).to_be_visible()
    expect(page.get_by_role("img", name="Latency per provider, p50 and p95")).to_be_visible()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    # A person's name narrows everything to them; the CSV keeps the filters.
    page.locator("#usage-table").get_by_role("link", name="bob").first.click()
    expect(page.get_by_label("User name")).to_have_value("bob")
    expect(page.locator("#usage-table tbody tr")).to_have_count(3)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("User,Provider,Model")
    assert len(lines) == 4 and all(line.startswith("bob,") for line in lines[1:])

    # A filter the form refuses says why, in words, beside the field.
    page.get_by_label("User name").fill("nobody")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("alert")).to_contain_text("No one has the user name “nobody”")
