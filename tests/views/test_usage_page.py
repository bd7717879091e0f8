"""A person's usage page (/settings/usage/) and the widget's budget warning: the numbers
are the stored messages', each person sees only their own, and the warning starts at 80%."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db.models import Count, Q, Sum
from django.test import Client
from django.utils import timezone

from accounts.models import User
from llm import usage
from llm.models import DailyUsage, Message, ModelPrice
from llm.templatetags.humanize_costs import usd
from llm.turns import run_turn
from tests.engine.conftest import configure
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.views.tables import table_rows


def page(client: Client, **params: str) -> str:
    response = client.get("/settings/usage/", params)
    assert response.status_code == 200
    return response.content.decode()


def tiles(html: str) -> dict[str, str]:
    """The month's totals as the tiles show them ('Input tokens' -> '1,234')."""
    out = {}
    for tile in html.split('<div class="usage-tile">')[1:]:
        name, _, rest = tile.partition("<strong")
        out[name.strip()] = rest.split(">", 1)[1].split("</strong>", 1)[0]
    return out


@sync_to_async
def _prices_and_settings(alice: User, openai: FakeOpenAI, anthropic: FakeAnthropic) -> None:
    day = dt.date(2024, 1, 1)
    ModelPrice.objects.create(
        provider="openai", model="gpt-4o", input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10"), effective_from=day,
    )  # fmt: skip
    ModelPrice.objects.create(
        provider="anthropic", model="claude-sonnet-4-5", input_per_million=Decimal("3"),
        output_per_million=Decimal("15"), effective_from=day,
    )  # fmt: skip
    configure(alice, openai)
    configure(alice, anthropic, "anthropic", model="claude-sonnet-4-5")


@sync_to_async
def _page_as(user: User) -> str:
    client = Client()
    client.force_login(user)
    return page(client)


async def turn(user: User, text: str, provider: str) -> Any:
    events = [event async for event in run_turn(user, text, provider=provider)]
    return events[-1]


@pytest.mark.django_db(transaction=True)
async def test_the_numbers_are_the_stored_messages(
    alice: User,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    replies_end: None,
    settings: Any,
) -> None:
    settings.LLM_MAX_RETRIES = 0
    await _prices_and_settings(alice, fake_openai, fake_anthropic)
    fake_openai.reply("One.", usage=(1200, 340))
    fake_anthropic.reply("Two.", usage=(2048, 777))
    for provider in ("openai", "openai", "anthropic"):
        assert (await turn(alice, "Count", provider)).status == "complete"
    fake_openai.fail(500)
    assert (await turn(alice, "Fail", "openai")).status == "error"  # a failure counts too
    html = await _page_as(alice)

    stored = await Message.objects.filter(
        conversation__user=alice, role="assistant"
    ).aaggregate(
        requests=Count("id"), errors=Count("id", filter=Q(status="error")),
        input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost=Sum("cost"),
    )  # fmt: skip
    assert stored["requests"] == 4 and stored["errors"] == 1 and stored["cost"] > 0
    shown = tiles(html)
    assert shown["Requests"] == str(stored["requests"])
    assert shown["Failed"] == str(stored["errors"])
    assert shown["Input tokens"] == f"{stored['input_tokens']:,}"
    assert shown["Output tokens"] == f"{stored['output_tokens']:,}"
    assert shown["Cost"] == usd(stored["cost"])

    per_model = {(r[0], r[1]): r[2:] for r in table_rows(html, "usage-models")}
    async for row in (
        Message.objects.filter(conversation__user=alice, role="assistant")
        .values("provider", "model")
        .annotate(n=Count("id"), i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost"))
    ):
        requests, _failed, tokens_in, tokens_out, cost = per_model[(row["provider"], row["model"])]
        assert (requests, tokens_in, tokens_out, cost) == (
            str(row["n"]), f"{row['i']:,}", f"{row['o']:,}", usd(row["c"]),
        )  # fmt: skip
    today = timezone.localdate()
    day_row = next(r for r in table_rows(html, "usage-days") if r[0].endswith(f"{today:%b}") and
                   r[0].split()[1] == str(today.day))  # fmt: skip
    assert day_row[1] == "4" and day_row[-1] == usd(stored["cost"])


def record(user: User, cost: str, day: dt.date | None = None, **fields: Any) -> None:
    DailyUsage.objects.create(
        user=user, day=day or timezone.localdate(), provider=fields.get("provider", "openai"),
        model=fields.get("model", "gpt-4o"), requests=fields.get("requests", 2),
        errors=0, input_tokens=100, output_tokens=50, cost=Decimal(cost),
    )  # fmt: skip


def test_bob_sees_only_his_own_usage(alice: User, bob_client: Client, bob: User) -> None:
    record(alice, "3.50", model="gpt-4o-alice")
    record(bob, "0.25", model="gpt-4o-bob")
    for params in ({}, {"user": "alice"}, {"user_id": str(alice.pk)}):
        html = page(bob_client, **params)
        assert "gpt-4o-bob" in html and "gpt-4o-alice" not in html
        assert tiles(html)["Cost"] == "$0.2500"


def test_other_months_and_words_for_a_bad_one(alice_client: Client, alice: User) -> None:
    today = timezone.localdate()
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=3)
    record(alice, "1.00", day=last_month, model="last-month-model")
    record(alice, "2.00", model="this-month-model")
    html = page(alice_client)
    assert "this-month-model" in html and "last-month-model" not in html
    html = page(alice_client, month=f"{last_month:%Y-%m}")
    assert "last-month-model" in html and "this-month-model" not in html
    assert tiles(html)["Cost"] == "$1.00"
    assert "Write the month as 2026-01" in page(alice_client, month="soon")
    next_year = f"{today.year + 1}-01"
    assert "That month has not started yet" in page(alice_client, month=next_year)


def test_the_budget_left_and_when_it_resets(alice_client: Client, alice: User) -> None:
    alice.monthly_budget = Decimal("5.00")
    alice.save()
    record(alice, "1.25")
    html = page(alice_client)
    resets = usage.resets_on(timezone.localdate())
    assert "<strong>$1.25</strong> of $5.00 used (25%)" in html
    assert "<strong>$3.75</strong> left" in html
    assert f'resets on <time datetime="{resets:%Y-%m-%d}">{resets.day} {resets:%B}</time>' in html
    assert "You have used" not in html  # no warning at 25%


def test_without_a_budget_the_page_says_so(alice_client: Client, alice: User) -> None:
    record(alice, "0.50")
    assert "You have no monthly budget: $0.50 spent so far this month" in page(alice_client)


def test_signed_out_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get("/settings/usage/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the widget's warning, on the picker partial it loads anyway -------------------------


def picker(client: Client) -> str:
    response = client.get("/chat/picker/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return unescape(response.content.decode())


@pytest.mark.parametrize(("spent", "warned"), [("7.99", False), ("8.00", True), ("10.40", True)])
def test_the_widget_warns_from_80_percent(
    alice_client: Client, alice: User, spent: str, warned: bool
) -> None:
    alice.monthly_budget = Decimal("10.00")
    alice.save()
    record(alice, spent)
    html = picker(alice_client)
    resets = usage.resets_on(timezone.localdate())
    when = f"{resets.day} {resets:%B}"
    if not warned:
        assert "cw-budget" not in html
    elif spent == "8.00":
        assert f"You have used 80% of this month's $10.00; it resets on {when}." in html
    else:
        assert f"You have used all of this month's $10.00; it resets on {when}." in html


def test_no_warning_without_a_budget(alice_client: Client, alice: User) -> None:
    record(alice, "500.00")
    assert "cw-budget" not in picker(alice_client)


def test_last_months_spend_does_not_warn(alice_client: Client, alice: User) -> None:
    alice.monthly_budget = Decimal("1.00")
    alice.save()
    record(alice, "5.00", day=timezone.localdate().replace(day=1) - dt.timedelta(days=1))
    assert "cw-budget" not in picker(alice_client)


def test_budget_arithmetic_at_the_edges() -> None:
    day = dt.date(2026, 12, 31)
    assert usage.resets_on(day) == dt.date(2027, 1, 1)
    assert usage.resets_on(dt.date(2026, 1, 31)) == dt.date(2026, 2, 1)
    at = usage.Budget(Decimal("5.00"), Decimal("3.9999"), usage.resets_on(day))
    assert (at.used_percent, at.warn) == (79, False)
    at = usage.Budget(Decimal("5.00"), Decimal("4.00"), usage.resets_on(day))
    assert (at.used_percent, at.warn, at.warning()) == (
        80, True, "You have used 80% of this month's $5.00; it resets on 1 January.",
    )  # fmt: skip
    assert usage.Budget(None, Decimal(9), day).warning() == ""
    assert usage.Budget(Decimal(0), Decimal(0), day).as_dict()["used_percent"] is None
