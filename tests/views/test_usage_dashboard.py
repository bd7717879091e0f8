"""The staff usage dashboard under /admin/usage/."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from llm.models import DailyUsage


def record(
    user: User, days_ago: int, cost: str, provider: str = "openai", model: str = "gpt-4o"
) -> None:
    DailyUsage.objects.create(
        user=user,
        day=timezone.localdate() - timedelta(days=days_ago),
        provider=provider,
        model=model,
        requests=3,
        errors=1,
        input_tokens=1200,
        output_tokens=800,
        cost=Decimal(cost),
    )


def test_staff_see_spend_per_day_model_and_person(
    charlie_client: Client, alice: User, bob: User
) -> None:
    record(alice, 0, "1.25")
    record(bob, 3, "0.0042", provider="anthropic", model="claude-sonnet-4-5")
    record(alice, 60, "99.00")  # outside the default 30 days
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "$1.25<" in body  # the total of the period, without the old row
    assert "claude-sonnet-4-5" in body and "gpt-4o" in body
    assert "alice" in body and "bob" in body
    assert "$99" not in body


def test_period_can_be_chosen(charlie_client: Client, alice: User) -> None:
    record(alice, 60, "99.00")
    body = charlie_client.get(reverse("usage_dashboard"), {"days": 90}).content.decode()
    assert "$99.00" in body
    assert charlie_client.get(reverse("usage_dashboard"), {"days": "x"}).status_code == 200


def test_clients_are_sent_to_the_admin_sign_in(alice_client: Client) -> None:
    response = alice_client.get(reverse("usage_dashboard"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_index_links_to_the_dashboard(charlie_client: Client) -> None:
    assert reverse("usage_dashboard").encode() in charlie_client.get(reverse("admin:index")).content
