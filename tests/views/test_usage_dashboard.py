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


def test_staff_see_provider_health_of_the_last_15_minutes(
    charlie_client: Client, alice: User
) -> None:
    from llm.models import Conversation, Message, ProviderConfig

    conversation = Conversation.objects.create(user=alice)
    for status in ("complete", "complete", "complete", "error"):
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            status=status,
            provider="anthropic",
            ttft_ms=250.0,
        )
    ProviderConfig.objects.create(
        user=alice, kind="anthropic", open_until=timezone.now() + timedelta(minutes=1)
    )
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "Provider health, last 15 minutes" in body
    row = body[body.index("<td>Anthropic</td>") :].split("</tr>", 1)[0]
    cells = [cell.split(">", 1)[1] for cell in row.split("</td>")[1:-1]]
    assert cells == ["4", "1", "25%", "250 ms", "1"]


def test_provider_health_says_when_there_is_nothing(charlie_client: Client) -> None:
    body = charlie_client.get(reverse("usage_dashboard")).content.decode()
    assert "No replies and no open breakers in the last 15 minutes." in body
