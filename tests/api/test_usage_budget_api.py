"""GET /api/v1/usage's `budget`: the same reading as the usage page and the widget."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, User
from llm import usage
from llm.models import DailyUsage


def spent(user: User, cost: str) -> None:
    DailyUsage.objects.create(
        user=user, day=timezone.localdate(), provider="openai", model="gpt-4o", requests=1,
        cost=Decimal(cost),
    )  # fmt: skip


def budget_of(user: User) -> dict[str, object]:
    _, raw = ApiToken.issue(user, "tests")
    response = Client().get("/api/v1/usage", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    return response.json()["budget"]


def test_the_budget_as_the_page_and_the_widget_say_it(alice: User, bob: User) -> None:
    alice.monthly_budget = Decimal("5.00")
    alice.save()
    spent(alice, "4.10")
    resets = usage.resets_on(timezone.localdate())
    assert budget_of(alice) == {
        "monthly_budget": "5.00",
        "spent": "4.100000",
        "left": "0.900000",
        "used_percent": 82,
        "resets_on": resets.isoformat(),
        "warning": f"You have used 82% of this month's $5.00; it resets on "
        f"{resets.day} {resets:%B}.",
    }
    # Bob's own, never alice's.
    assert budget_of(bob) == {
        "monthly_budget": None, "spent": "0.000000", "left": None, "used_percent": None,
        "resets_on": resets.isoformat(), "warning": None,
    }  # fmt: skip
